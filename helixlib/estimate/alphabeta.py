"""Time of one collective: α–β with NCCL bus factors, hierarchical when a group spans nodes.

nccl-tests conventions (NVIDIA nccl-tests, doc/PERFORMANCE.md): ``S`` is the full buffer in bytes (the reduced
tensor, the gathered output, the reduce-scattered input; for all-to-all the per-rank
send buffer), ``p`` the group size, and ``T = α + S·f/busbw`` with
``f = 2(p−1)/p`` (all-reduce) or ``(p−1)/p`` (all-gather, reduce-scatter, all-to-all).

Topology model (a group of ``p`` ranks on ``k`` nodes, one NIC per GPU):

* ring kinds take ``s = 2(p−1)`` (all-reduce) or ``p−1`` steps, each moving ``S/p``;
  ``s_net = 2(k−1)`` (or ``k−1``) of them cross the network, the rest use NVLink::

      α = base + (s − s_net)·hop_nvlink + s_net·hop_net
      β-term = (S/p) · ((s − s_net)/busbw_nvlink + s_net/busbw_net)

  Inside one node this is ``S·f/busbw_nvlink``; across nodes it is the hierarchical
  (intra reduce-scatter, inter all-reduce, intra all-gather) cost.
* all-to-all sends ``S/p`` to each peer at once, NVLink and NIC in parallel::

      α = base + hop (network hop if k > 1),
      β-term = max((p/k − 1)·(S/p)/busbw_nvlink, (p − p/k)·(S/p)/busbw_net)

* send_recv (a ring step of ring attention) moves ``S`` over one link: the network
  when the ring crosses nodes (every step waits for the slowest link), NVLink otherwise.

``busbw = bandwidth per direction × efficiency`` (datasheet figures are upper bounds).
A cluster preset may list a measured ``(alpha_s, busbw)`` for a (kind, group size); it
then replaces the topology model for that pair: ``T = α + S·f/busbw``.

``count`` calls of total size ``S`` pay ``count·α``. Groups of one rank cost nothing.
Arguments may be numpy arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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


def collective_time(cluster: Cluster, kind: str, nbytes, p, nodes, count=1) -> CommTime:
    """Time of ``count`` calls of ``kind`` moving ``nbytes`` in total over p ranks on ``nodes`` nodes."""
    S = np.asarray(nbytes, dtype=float)
    p_ = np.asarray(p, dtype=float)
    k = np.asarray(nodes, dtype=float)
    intra, inter = cluster.intra_node, cluster.inter_node
    if kind == CollectiveKind.ALL_TO_ALL:
        local = p_ / k
        alpha = cluster.base_latency_s + np.where(k > 1, inter.hop_latency_s, intra.hop_latency_s)
        bw = np.maximum((local - 1) * (S / p_) / intra.bus_bandwidth, (p_ - local) * (S / p_) / inter.bus_bandwidth)
    elif kind == CollectiveKind.SEND_RECV:
        alpha = cluster.base_latency_s + np.where(k > 1, inter.hop_latency_s, intra.hop_latency_s)
        bw = S / np.where(k > 1, inter.bus_bandwidth, intra.bus_bandwidth)
    else:
        steps, net = ring_steps(kind, p_, k)
        alpha = cluster.base_latency_s + (steps - net) * intra.hop_latency_s + net * inter.hop_latency_s
        bw = (S / p_) * ((steps - net) / intra.bus_bandwidth + net / inter.bus_bandwidth)
    for (mkind, size), fit in cluster.collectives.items():
        if mkind == kind:
            hit = p_ == size
            alpha = np.where(hit, fit.alpha_s, alpha)
            bw = np.where(hit, S * bus_factor(kind, p_) / fit.busbw, bw)
    alpha = np.where(p_ > 1, alpha * count, 0.0)
    bw = np.where(p_ > 1, bw, 0.0)
    return CommTime(_unwrap(alpha), _unwrap(bw), _unwrap(alpha + bw))


def _unwrap(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def bus_bandwidth(cluster: Cluster, kind: str, nbytes, p, nodes):
    """The bus bandwidth the model predicts, nccl-tests style: ``S·f / T``."""
    t = collective_time(cluster, kind, nbytes, p, nodes).time_s
    return np.asarray(nbytes, dtype=float) * bus_factor(kind, p) / t
