"""Token-to-token latency (TTL), throughput and memory of decoding, for arrays of configurations.

One decode step produces one token for each of ``B`` sequences whose KV caches hold ``S`` tokens. The
``N = W·pp·dp`` GPUs form ``dp`` data-parallel replicas, each a pipeline of ``pp`` stages of one
model-parallel group of ``W`` GPUs (laid out by :mod:`helixlib.estimate.decode_layout`). A replica serves
``B/dp`` sequences in ``pp`` micro-batches of ``b = B/(dp·pp)``; a token crosses every stage, so

    TTL = layers · t_layer(b) + t_lm_head(b) + pp · t_send(b)   (the send only when pp > 1)

(the stages work on the other micro-batches meanwhile: throughput ``B / TTL`` tokens/s, per GPU
``B / (TTL·N)``, per user ``1 / TTL``). One layer on the busiest GPU of a group:

* the weight matrices of the layer and the KV cache through the roofline (``helixlib.estimate.roofline``:
  ``max(FLOPs / (peak·efficiency), bytes / (bandwidth·memory_efficiency)) + launch``), the projections as
  GEMMs of ``M = b`` rows, attention as one fused kernel reading the cache (``helix`` also writes and
  reads its partial scores [b, h, S]);
* the collectives (``helixlib.estimate.alphabeta``), activations in ``act_bytes`` (bf16) and the
  log-sum-exp in fp32: every strategy all-reduces [b, D] over the group after ``W_O`` and after the FFN;
  ``helix`` all-reduces its partial scores [b, h, S] over the m segments (grows with S); ``helix-kv``
  exchanges partial outputs [b, h, d_v] and the log-sum-exp [b, h] in one All-to-All over the KVP shards
  (independent of S);
* HOP-B (Bhatia et al., arXiv 2507.07120 §2.1.3): the attention-phase collective of one chunk of the batch
  overlaps the attention of the next (``hop_b_time``); every chunk pays the collective's latency α again,
  so with per-request chunks it pays only when a request's attention outlasts α.

Memory per GPU: the weights of a stage (embedding and logits, vocab-parallel over the group, on the end
stages), the KV cache of the replica's ``B/dp`` sequences for the stage's layers, the working set of a
micro-batch, NCCL buffers per communicator and the reserved bytes; ``max_batch`` is the largest B (a
multiple of dp·pp) that fits.
"""

from __future__ import annotations

import numpy as np

from helixlib.estimate.alphabeta import CommTime, collective_time
from helixlib.estimate.decode_layout import DecodeLayout, decode_layout, ffn_matrices
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.roofline import OpTime, flash_time, matmul_time
from helixlib.estimate.strategies import group_nodes, world_nodes
from helixlib.estimate.workload import LSE_BYTES
from helixlib.plan.model import DTYPE_BYTES, ModelConfig
from helixlib.plan.names import FLOPS_PER_ELEMENT, CollectiveKind, DecodeStrategy, KvLayout, OpKind

ACT_BYTES = DTYPE_BYTES["bf16"]  # activations, partial outputs and scores on the wire

#: result fields, one array each (see ``decode_costs``)
DECODE_FIELDS = (
    "valid", "ttl_s", "ttl_hop_b_s", "tokens_per_s_per_gpu", "tokens_per_s_per_user",
    "tokens_per_s_per_gpu_hop_b", "tokens_per_s_per_user_hop_b",
    "weight_read_s", "kv_read_s", "compute_s", "launch_s", "communication_s", "exposed_communication_hop_b_s",
    "attention_comm_s", "layer_s", "weights_bytes", "kv_cache_bytes", "working_bytes", "comm_buffer_bytes",
    "reserved_bytes", "memory_bytes", "capacity_bytes", "fits", "max_batch", "duplication", "gpus",
)


def _ops(model: ModelConfig, lay: DecodeLayout, b, wbytes: int):
    """(name, flops, bytes, M, K, N) of the layer's GEMMs on one GPU for b rows."""
    D = model.hidden
    gemms = [("q_proj", lay.q_params, D, lay.q_params // D), ("kv_proj", lay.kv_params, D, lay.kv_params // D),
             ("o_proj", lay.o_params, lay.o_rows, D),
             ("ffn_in", lay.ffn_params - lay.ffn_cols * D, D, (ffn_matrices(model) - 1) * lay.ffn_cols),
             ("ffn_out", lay.ffn_cols * D, lay.ffn_cols, D)]
    return [(name, 2 * b * p, p * wbytes + b * (K + N) * ACT_BYTES, b, K, N) for name, p, K, N in gemms]


def _parts(t: OpTime):
    """(memory side, compute beyond it, launch) of one roofline time."""
    return t.memory_s, np.maximum(t.compute_s - t.memory_s, 0.0), t.time_s - np.maximum(t.compute_s, t.memory_s)


def decode_costs(model: ModelConfig, cluster: Cluster, strategy: str, split, second, context, batch, pp=1, dp=1,
                 weight_dtype: str | None = None, kv_dtype: str | None = None,
                 kv_layout: str = KvLayout.SEPARATE) -> dict[str, np.ndarray]:
    """Every field of ``DECODE_FIELDS`` for the configurations given as arrays (or numbers) of the head
    split, the second level, the context S, the batch B, pipeline stages and replicas; invalid rows are
    NaN (``valid`` False, ``fits`` False, ``max_batch`` 0). ``weight_dtype`` / ``kv_dtype`` default to the
    model's dtype; the FLOP peak of each is the device's for that dtype."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _costs(model, cluster, strategy, split, second, context, batch, pp, dp, weight_dtype or model.dtype,
                      kv_dtype or model.dtype, kv_layout)


def _costs(model, cluster, strategy, split, second, context, batch, pp, dp, wdt, kdt, kv_layout):
    wbytes, kbytes = DTYPE_BYTES[wdt], DTYPE_BYTES[kdt]
    split, second, S, B, pp, dp = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.int64))
                                                        for v in (split, second, context, batch, pp, dp)))
    dev, gpn = cluster.device, cluster.gpus_per_node
    lay = decode_layout(model, strategy, split, second, S, kv_layout)
    W = lay.width
    N = W * pp * dp
    ok = lay.valid & (pp >= 1) & (dp >= 1) & (model.layers % pp == 0) & (B % (dp * pp) == 0) & (B >= 1)
    ok &= (N <= gpn) | (W % gpn == 0) | (gpn % W == 0)
    b = np.maximum(B // (dp * pp), 1).astype(float)  # products of sizes in float64: no int64 overflow
    layers = model.layers
    # ---- one layer: GEMMs, attention, collectives
    weight_mem = compute = launch = 0.0
    for _, flops, nbytes, M, K, N_ in _ops(model, lay, b, wbytes):
        m, c, lz = _parts(matmul_time(dev, wdt, flops, nbytes, M, K, N_))
        weight_mem, compute, launch = weight_mem + m, compute + c, launch + lz
    h, pos = lay.heads, lay.positions
    attn_flops = b * h * pos * (2 * lay.qk_cols + 2 * lay.v_cols + FLOPS_PER_ELEMENT[OpKind.SOFTMAX])
    attn_bytes = b * (lay.kv_elements * kbytes + h * (lay.qk_cols + lay.v_cols) * ACT_BYTES)
    if strategy == DecodeStrategy.HELIX:
        attn_bytes = attn_bytes + 2 * b * h * pos * ACT_BYTES  # partial scores written, summed scores read
    attn = flash_time(dev, kdt, attn_flops, attn_bytes)
    kv_mem, attn_compute, attn_launch = _parts(attn)
    attn_comm = _attention_comm(cluster, strategy, lay, b, split, second)
    ar = collective_time(cluster, CollectiveKind.ALL_REDUCE, b * model.hidden * ACT_BYTES, W, world_nodes(W, gpn),
                         count=2)
    layer = weight_mem + compute + launch + kv_mem + attn_compute + attn_launch + attn_comm.time_s + ar.time_s
    hop = hop_b_time(attn.time_s, attn_comm, b)
    # ---- the whole model: layers, the logits, the pipeline's sends
    lm = _lm_head(model, dev, wdt, wbytes, b, W)
    send = np.where(pp > 1, pp * collective_time(cluster, CollectiveKind.SEND_RECV, b * model.hidden * ACT_BYTES,
                                                 2, np.where(N > gpn, 2, 1)).time_s, 0.0)
    lm_m, lm_c, lm_l = _parts(lm) if lm is not None else (0.0, 0.0, 0.0)
    comm = layers * (attn_comm.time_s + ar.time_s) + send
    ttl = layers * layer + lm_m + lm_c + lm_l + send
    saved = layers * (attn.time_s + attn_comm.time_s - hop)  # what HOP-B hides
    ttl_hop = ttl - saved
    res = {
        "valid": ok, "ttl_s": ttl, "ttl_hop_b_s": ttl_hop,
        "tokens_per_s_per_gpu": B / (ttl * N), "tokens_per_s_per_user": 1 / ttl,
        "tokens_per_s_per_gpu_hop_b": B / (ttl_hop * N), "tokens_per_s_per_user_hop_b": 1 / ttl_hop,
        "weight_read_s": layers * weight_mem + lm_m, "kv_read_s": layers * kv_mem,
        "compute_s": layers * (compute + attn_compute) + lm_c, "launch_s": layers * (launch + attn_launch) + lm_l,
        "communication_s": comm, "exposed_communication_hop_b_s": comm - saved,
        "attention_comm_s": layers * attn_comm.time_s, "layer_s": layer,
        "duplication": lay.duplication, "gpus": N,
    }
    res.update(_memory(model, cluster, strategy, lay, second, B, b, pp, dp, wbytes, kbytes))
    out = {}
    for f in DECODE_FIELDS:
        v = np.broadcast_to(np.asarray(res[f]), ok.shape)
        if f in ("valid", "fits"):
            out[f] = v.astype(bool) & ok
        elif f in ("max_batch", "gpus"):
            out[f] = np.where(ok, v, 0).astype(np.int64)
        else:
            out[f] = np.where(ok, v.astype(float), np.nan)
    return out


def hop_b_time(attention_s, comm: CommTime, b):
    """Attention and its collective pipelined over q chunks of the batch (HOP-B): per chunk a = A/q of
    attention and c = α + β-part/q of communication, in all ``q·max(a, c) + min(a, c)``; the best q among
    1, 2, 4, ... ≤ b (q = 1 is no overlap: ``A + C``). Arrays allowed."""
    best = attention_s + comm.time_s
    q = 2
    while q <= np.max(b):
        a, c = attention_s / q, comm.alpha_s + comm.bandwidth_s / q
        best = np.where(q <= b, np.minimum(best, q * np.maximum(a, c) + np.minimum(a, c)), best)
        q *= 2
    return best


def attention_comm_bytes(strategy: str, lay: DecodeLayout, b):
    """nccl-tests size of the collective between attention and W_O for b sequences: ``helix``'s partial
    scores [b, h, S] (all-reduced over the m segments), ``helix-kv``'s send buffer of partial outputs
    [b, h, d_v] and log-sum-exp [b, h] (All-to-All over the KVP shards); 0 for ``megatron-tp``."""
    if strategy == DecodeStrategy.HELIX:
        return b * lay.heads * lay.positions * ACT_BYTES
    if strategy == DecodeStrategy.HELIX_KV:
        return b * lay.heads * (lay.v_cols * ACT_BYTES + LSE_BYTES)
    return np.zeros(np.shape(lay.width))


def _attention_comm(cluster: Cluster, strategy, lay: DecodeLayout, b, split, second) -> CommTime:
    """Time of ``attention_comm_bytes`` (none for TP)."""
    gpn = cluster.gpus_per_node
    nbytes = attention_comm_bytes(strategy, lay, b)
    if strategy == DecodeStrategy.HELIX:
        return collective_time(cluster, CollectiveKind.ALL_REDUCE, nbytes, second,
                               group_nodes(second, second, split, gpn))
    if strategy == DecodeStrategy.HELIX_KV:
        return collective_time(cluster, CollectiveKind.ALL_TO_ALL, nbytes, second,
                               np.minimum(second, world_nodes(lay.width, gpn)))
    zero = np.zeros(np.shape(lay.width))
    return CommTime(zero, zero, zero)


def _lm_head(model: ModelConfig, dev, wdt, wbytes, b, W) -> OpTime | None:
    """The logits GEMM [b, D]·[D, V/W] (vocab-parallel over the group), once per token; None without a vocab."""
    if model.vocab is None:
        return None
    cols = -(-model.vocab // W)
    params = model.hidden * cols
    return matmul_time(dev, wdt, 2 * b * params, params * wbytes + b * (model.hidden + cols) * ACT_BYTES, b,
                       model.hidden, cols)


def _memory(model: ModelConfig, cluster: Cluster, strategy, lay: DecodeLayout, second, B, b, pp, dp, wbytes,
            kbytes) -> dict:
    """Memory per GPU by term, and the largest batch that fits (see the module docstring)."""
    dev = cluster.device
    stage_layers = model.layers / pp
    W = lay.width
    ends = np.where(pp > 1, 1, 2)  # embedding on the first stage, logits on the last; both when pp = 1
    vocab = 0 if model.vocab is None else model.vocab
    weights = (stage_layers * lay.weight_params + ends * vocab * model.hidden / W) * wbytes
    kv_per_seq = stage_layers * lay.kv_elements * kbytes
    work_per_seq = ACT_BYTES * (2 * model.hidden + (ffn_matrices(model) - 1) * lay.ffn_cols)
    if strategy == DecodeStrategy.HELIX:
        work_per_seq = work_per_seq + lay.heads * lay.positions * ACT_BYTES  # the partial scores
    elif strategy == DecodeStrategy.HELIX_KV:
        work_per_seq = work_per_seq + 2 * lay.heads * (lay.v_cols * ACT_BYTES + LSE_BYTES)  # All-to-All buffers
    groups = (W > 1).astype(int) + (second > 1) + (pp > 1)
    comm = groups * cluster.communicator_bytes
    kv = B / dp * kv_per_seq
    working = b * work_per_seq
    total = weights + kv + working + comm + dev.reserved_bytes
    slope = kv_per_seq / dp + work_per_seq / (dp * pp)
    fixed = weights + comm + dev.reserved_bytes
    fit = np.floor(np.maximum(dev.memory_bytes - fixed, 0) / slope)
    step = dp * pp
    return {"weights_bytes": weights, "kv_cache_bytes": kv, "working_bytes": working, "comm_buffer_bytes": comm,
            "reserved_bytes": np.full(np.shape(W), dev.reserved_bytes), "memory_bytes": total,
            "capacity_bytes": np.full(np.shape(W), dev.memory_bytes), "fits": total <= dev.memory_bytes,
            "max_batch": (fit // step) * step}
