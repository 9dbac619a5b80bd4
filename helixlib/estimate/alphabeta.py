"""Time of one collective: published curves by message size, else NCCL's protocol model.

nccl-tests conventions (NVIDIA nccl-tests, doc/PERFORMANCE.md): ``S`` is the full buffer in bytes (the reduced
tensor, the gathered output, the reduce-scattered input; for all-to-all the per-rank
send buffer), ``p`` the group size, and the bus bandwidth is ``busbw = S·f/T`` with
``f = 2(p−1)/p`` (all-reduce) or ``(p−1)/p`` (all-gather, reduce-scatter, all-to-all).

In order of precedence, for ``count`` calls moving ``S`` bytes in all (``S/count`` each):

1. measured sweeps of (kind, p, nodes) (``helixlib.estimate.collectives``: published nccl-tests
   curves, or this machine's gloo curves that ``calibrate`` writes), inside and above their sizes:
   ``count · T_curve(S/count)``; an all-gather or reduce-scatter the preset lets borrow the
   all-reduce curve (``derive_kinds``) takes half its time at the same size (the same bus bandwidth);
2. a measured fit ``(alpha_s, busbw)`` of the cluster preset for (kind, p) — ``calibrate``'s
   straight line through the same gloo points: ``T = count·α + S·f/busbw``;
3. the topology model: ring kinds by NCCL's protocols (``helixlib.estimate.collectives`` docstring),
   ``count · min_protocol(α + (S/count)·f / (busbw · fraction))``; without protocols in the preset, one
   protocol with ``α = base + (s − s_net)·hop_nvlink + s_net·hop_net`` and the full bus bandwidth;

* all-to-all sends ``S/p`` to each peer at once, NVLink and NIC in parallel::

      α = base + hop (network hop if k > 1),
      β-term = max((p/k − 1)·(S/p)/busbw_nvlink, (p − p/k)·(S/p)/busbw_net)

* send_recv (a pipeline stage boundary, a ring step of ring attention) moves ``S`` over one link:
  the network when the pair spans nodes, NVLink otherwise.

``busbw = bandwidth per direction × efficiency`` (datasheet figures are upper bounds).
Groups of one rank cost nothing. Arguments may be numpy arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from helixlib.estimate.collectives import Protocol, curve_time, ring_busbw
from helixlib.estimate.hardware import Cluster
from helixlib.plan.names import CollectiveKind, bus_factor


class CommTime(NamedTuple):
    alpha_s: object  # latency part (count × α)
    bandwidth_s: object  # size part
    time_s: object


def ring_steps(kind: str, p, nodes) -> tuple:
    """(steps, steps over the network) of a ring collective of p ranks on `nodes` nodes."""
    p, k = np.asarray(p, dtype=float), np.asarray(nodes, dtype=float)
    per = 2 if kind == CollectiveKind.ALL_REDUCE else 1
    return per * (p - 1), per * (k - 1)


def protocols(cluster: Cluster) -> tuple[Protocol, ...]:
    """The preset's protocols, or one built from its base and hop latencies."""
    return cluster.protocols or (Protocol("single", cluster.base_latency_s, cluster.intra_node.hop_latency_s,
                                          cluster.inter_node.hop_latency_s, 1.0),)


def model_time(cluster: Cluster, kind: str, nbytes, p, nodes, count=1) -> tuple:
    """(α part, bandwidth part) of the topology model (rule 3 of the module docstring), all calls."""
    S, p_, k, n = (np.asarray(v, dtype=float) for v in (nbytes, p, nodes, count))
    intra, inter = cluster.intra_node, cluster.inter_node
    per_call = S / n
    on_net = k > 1
    if kind == CollectiveKind.ALL_TO_ALL:  # protocol-independent parts, once
        local = p_ / k
        bw = np.maximum((local - 1) * (per_call / p_) / intra.bus_bandwidth,
                        (p_ - local) * (per_call / p_) / inter.bus_bandwidth)
    elif kind == CollectiveKind.SEND_RECV:
        bw = per_call / np.where(on_net, inter.bus_bandwidth, intra.bus_bandwidth)
    else:
        steps, net = ring_steps(kind, p_, k)
        bw = per_call * bus_factor(kind, p_) / ring_busbw(intra.bus_bandwidth, inter.bus_bandwidth, p_, k)
    best_a = best_b = None
    for proto in protocols(cluster):
        if kind in (CollectiveKind.ALL_TO_ALL, CollectiveKind.SEND_RECV):
            alpha = proto.base_latency_s + np.where(on_net, proto.net_hop_s, proto.nvlink_hop_s)
        else:
            alpha = proto.base_latency_s + (steps - net) * proto.nvlink_hop_s + net * proto.net_hop_s
        b = bw / proto.bandwidth_factor
        if best_a is None:
            best_a, best_b = alpha + 0 * b, b + 0 * alpha
        else:
            better = alpha + b < best_a + best_b
            best_a, best_b = np.where(better, alpha, best_a), np.where(better, b, best_b)
    return best_a * n, best_b * n


def collective_time(cluster: Cluster, kind: str, nbytes, p, nodes, count=1) -> CommTime:
    """Time of ``count`` calls of ``kind`` moving ``nbytes`` in total over p ranks on ``nodes`` nodes."""
    S = np.asarray(nbytes, dtype=float)
    p_, k, n = (np.asarray(v, dtype=float) for v in (p, nodes, count))
    alpha, bw = model_time(cluster, kind, S, p_, k, n)
    for (mkind, size), fit in cluster.collectives.items():
        if mkind == kind:
            hit = p_ == size
            alpha = np.where(hit, fit.alpha_s * n, alpha)
            bw = np.where(hit, S * bus_factor(kind, p_) / fit.busbw, bw)
    per_call = S / np.maximum(n, 1)
    curve = curve_time(cluster.curves, kind, per_call, p_, k)
    source = cluster.derived_kinds.get(kind)
    if source is not None:
        curve = np.fmin(curve, 0.5 * curve_time(cluster.curves, source, per_call, p_, k)) \
            if np.isfinite(curve).any() else 0.5 * curve_time(cluster.curves, source, per_call, p_, k)
    measured = np.isfinite(curve)
    if measured.any():  # a curve's time is split at the model's latency of one call: latency, the rest bandwidth
        floor = alpha / np.maximum(n, 1)  # the model's α of one call of this size
        alpha = np.where(measured, n * np.minimum(curve, floor), alpha)
        bw = np.where(measured, n * curve - alpha, bw)
    alpha = np.where(p_ > 1, alpha, 0.0)
    bw = np.where(p_ > 1, bw, 0.0)
    return CommTime(_unwrap(alpha), _unwrap(bw), _unwrap(alpha + bw))


def _unwrap(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def bus_bandwidth(cluster: Cluster, kind: str, nbytes, p, nodes):
    """The bus bandwidth the model predicts, nccl-tests style: ``S·f / T``."""
    t = collective_time(cluster, kind, nbytes, p, nodes).time_s
    return np.asarray(nbytes, dtype=float) * bus_factor(kind, p) / t
