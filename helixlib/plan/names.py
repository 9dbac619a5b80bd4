"""The names the Plan, the torch layer, the DAG and the estimator share, defined once.

They are ``StrEnum`` members, so they compare equal to their strings (``QkMode.GATHER_QK ==
"gather_qk"``), print as them, and serialise to JSON as them: files, command-line flags
and recorded traces keep using the plain strings.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class QkMode(StrEnum):
    """How the partial scores of a split head dimension become exact."""

    REDUCE_SCORES = "reduce_scores"  # all-reduce the partial Q·Kᵀ over the dim_segment group
    GATHER_QK = "gather_qk"  # all-gather the Q and K segments, full scores on every rank
    #: the deployment plan's literal reading: every segment takes its own softmax of its partial
    #: scores (scaled by 1/√d_s) and nothing is reduced. NOT exact: kept to measure how wrong it is.
    SEGMENT_LOCAL = "segment_local"


#: the exact ways (``segment_local`` is kept apart: it is the plan's wrong dataflow)
QK_MODES = (QkMode.REDUCE_SCORES, QkMode.GATHER_QK)


class OutputMode(StrEnum):
    """The out-projection: Megatron's row-parallel all-reduce, or the plan's two-phase concat."""

    ALLREDUCE = "allreduce"
    CONCAT = "concat"


OUTPUT_MODES = tuple(OutputMode)


class SecondLevel(StrEnum):
    """How each head group is split again over its ranks."""

    DIM_SEGMENTS = "dim_segments"  # the head dimension: partial scores, reduced (or Q/K gathered)
    #: the KV sequence (Helix Parallelism, arXiv 2507.07120): partial outputs and log-sum-exp per
    #: shard, exchanged by one All-to-All and combined exactly
    KV_SHARDS = "kv_shards"


class MeshDim(StrEnum):
    """Process groups of a rank. ``DIM_SEGMENT`` is the m ranks that share a head group (they
    hold different dim segments); ``HEAD_GROUP`` the n ranks that share a dim segment (or KV
    shard); ``KV_SHARD`` the p ranks that share a head group (they hold different KV positions);
    ``KV_SHARE`` the head groups that hold a copy of the same KV heads (grouped-query attention
    with more head groups than KV heads)."""

    HEAD_GROUP = "head_group"
    DIM_SEGMENT = "dim_segment"
    KV_SHARD = "kv_shard"
    KV_SHARE = "kv_share"
    WORLD = "world"


#: ``init_device_mesh(dev, (n, m), mesh_dim_names=MESH_DIM_NAMES)``: rank = g·m + s
MESH_DIM_NAMES = (MeshDim.HEAD_GROUP.value, MeshDim.DIM_SEGMENT.value)
#: the KV-shard partition's mesh ``(n, p)``: rank = g·p + j (the All-to-All group is contiguous)
KV_MESH_DIM_NAMES = (MeshDim.HEAD_GROUP.value, MeshDim.KV_SHARD.value)


class StepPhase(StrEnum):
    """What one step of the Plan processes: the whole sequence (prefill, and training forward +
    backward) or one new token per sequence against a KV cache of ``seq_len`` tokens (decode)."""

    PREFILL = "prefill"
    DECODE = "decode"


class KvPlacement(StrEnum):
    """Which KV shard owns a block of ``tokens_per_block`` positions: block b -> b mod p
    (TensorRT-LLM's Helix; the cache grows evenly), or p contiguous runs of blocks (new
    decode tokens then all land on the last shard)."""

    ROUND_ROBIN = "round_robin"
    CONTIGUOUS = "contiguous"


class Phase(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"


class CollectiveKind(StrEnum):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    SEND_RECV = "send_recv"


def bus_factor(kind: str, p):
    """nccl-tests' bus factor f (``busbw = S·f / t``; the bytes one rank sends = f·S for the ring
    algorithms): all-reduce 2(p−1)/p, all-gather, reduce-scatter and all-to-all (p−1)/p, a
    point-to-point transfer 1. ``p`` may be a numpy array (then so is the result).
    Source: NVIDIA nccl-tests, doc/PERFORMANCE.md ("bus bandwidth")."""
    arr = np.asarray(p, dtype=float)
    if kind == CollectiveKind.ALL_REDUCE:
        f = 2 * (arr - 1) / arr
    elif kind in (CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER, CollectiveKind.ALL_TO_ALL):
        f = (arr - 1) / arr
    elif kind == CollectiveKind.SEND_RECV:
        f = np.ones_like(arr)
    else:
        raise ValueError(f"unknown collective kind {kind!r}")
    return float(f) if f.ndim == 0 else f


class Mapping(StrEnum):
    """Megatron-style paired collectives (``tensor_parallel/mappings.py``); see ``MAPPINGS``."""

    COPY_TO_REGION = "copy_to_region"  # f: replicated input into a column-parallel op
    REDUCE_FROM_REGION = "reduce_from_region"  # g: row-parallel output, replicated after
    ALL_REDUCE_SUM = "all_reduce_sum"  # partial scores, rank-local use after
    ALL_GATHER_SUM = "all_gather_sum"  # gathered, used by rank-local partial ops
    GATHER_FROM_REGION = "gather_from_region"  # gathered, replicated after: backward splits
    ALL_TO_ALL = "all_to_all"  # KV shards' partial outputs: backward is the transposed All-to-All
    GRAD_SYNC = "grad_sync"  # replicated weights: their gradients summed after backward (as DDP does)


#: mapping -> (forward collective, backward collective); None is the identity. Which backward a
#: reduction needs depends on whether what follows it is replicated: after a row-parallel
#: all-reduce everything is replicated, so its backward is the identity; the partial scores feed
#: a rank-local P·V_s, so their all-reduce needs an all-reduce in backward too (Shoeybi et al.,
#: "Megatron-LM", arXiv 1909.08053, §3, the f and g operators).
MAPPINGS: dict[str, tuple[CollectiveKind | None, CollectiveKind | None]] = {
    Mapping.COPY_TO_REGION: (None, CollectiveKind.ALL_REDUCE),
    Mapping.REDUCE_FROM_REGION: (CollectiveKind.ALL_REDUCE, None),
    Mapping.ALL_REDUCE_SUM: (CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_REDUCE),
    Mapping.ALL_GATHER_SUM: (CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER),
    Mapping.GATHER_FROM_REGION: (CollectiveKind.ALL_GATHER, None),
    Mapping.ALL_TO_ALL: (CollectiveKind.ALL_TO_ALL, CollectiveKind.ALL_TO_ALL),
    Mapping.GRAD_SYNC: (None, CollectiveKind.ALL_REDUCE),
}


class Comm(StrEnum):
    """The communication points of the block, by the name the Plan, the layer, the trace, the
    DAG and the closed-form strategies all use. A backward collective is ``<name>.backward``."""

    QKV_INPUT = "qkv_input"  # copy_to_region before Q/K/V (all-reduce of dh1 in backward)
    Q_ALLGATHER = "q_allgather"  # gather_qk
    K_ALLGATHER = "k_allgather"  # gather_qk
    SCORES_ALLREDUCE = "scores_allreduce"  # reduce_scores
    O_GATHER_SEGMENTS = "o_gather_segments"  # concat: within the head group
    O_GATHER_GROUPS = "o_gather_groups"  # concat: across head groups
    OUT_ALLGATHER = "out_allgather"  # concat: the column-parallel out-projection's output
    OUT_PROJ_ALLREDUCE = "out_proj_allreduce"  # allreduce: row-parallel out-projection
    FC1_INPUT = "fc1_input"  # copy_to_region before FC1
    FC2_ALLREDUCE = "fc2_allreduce"  # row-parallel FC2
    O_ALL_TO_ALL = "o_all_to_all"  # KV shards: partial outputs, split by query head, to their combiner
    LSE_ALL_TO_ALL = "lse_all_to_all"  # KV shards: the log-sum-exp of every partial output (fp32 or wider)
    QKV_GRAD_ALLREDUCE = "qkv_grad_allreduce"  # KV shards: Wq/Wk/Wv of a head group sit on its p shards
    KV_GRAD_ALLREDUCE = "kv_grad_allreduce"  # more head groups than KV heads: Wk/Wv copies over kv_share

    def backward(self) -> str:
        return f"{self.value}.backward"


class OpKind(StrEnum):
    MATMUL = "matmul"
    LAYERNORM = "layernorm"
    SOFTMAX = "softmax"
    GELU = "gelu"
    ADD = "add"
    FLASH_ATTENTION = "flash_attention"  # the estimator's fused scores + softmax + P·V
    SWIGLU = "swiglu"  # silu(gate) * up
    LSE = "lse"  # the row log-sum-exp of the scores a softmax already has (its max and its sum)
    COMBINE = "combine"  # KV shards: O = Σ_i exp(LSE_i − LSE) O_i
    KV_APPEND = "kv_append"  # decode: the new token's K or V written into the cache (no FLOPs)
    # the block as trained (the estimator's Megatron block, embeddings, loss and optimizer), priced by bytes
    DROPOUT = "dropout"  # writes a 1-byte mask beside its output (fused with bias add and residual as Megatron does)
    COPY = "copy"  # a layout change (transpose + contiguous)
    EMBEDDING = "embedding"  # a gather of token rows
    CROSS_ENTROPY = "cross_entropy"  # vocabulary-parallel softmax cross-entropy over fp32 logits
    OPTIMIZER = "optimizer"  # the Adam update of the parameters a rank owns


class Recompute(StrEnum):
    """Activation recomputation in a training step (Korthikanti et al. 2022, arXiv 2205.05198): none,
    the attention core only (selective), or the whole block from its input (full)."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class Strategy(StrEnum):
    """How a block is split over a tensor-parallel group: the names the CLI and the design space use."""

    HELIX = "helix"  # head groups x head-dim segments (the Plan)
    MEGATRON_TP = "megatron-tp"  # Megatron tensor parallelism (Shoeybi et al. 2019)
    MEGATRON_SP = "megatron-sp"  # ... with sequence parallelism (Korthikanti et al. 2022)
    ULYSSES = "ulysses"  # DeepSpeed-Ulysses sequence parallelism
    RING = "ring"  # ring attention / context parallelism


#: FLOPs per output element of the element-wise ops: LayerNorm (mean, variance, normalise, affine)
#: 9, softmax with scale and mask 5 per score, GELU (tanh form) 8, an add 1, SwiGLU 6 (sigmoid:
#: negate, exp, add, divide; times the gate; times up), LSE 2 per row (log of the softmax's sum,
#: plus its max), a KV-cache append 0 (a copy).
FLOPS_PER_ELEMENT: dict[str, int] = {OpKind.LAYERNORM: 9, OpKind.SOFTMAX: 5, OpKind.GELU: 8, OpKind.ADD: 1,
                                     OpKind.SWIGLU: 6, OpKind.LSE: 2, OpKind.KV_APPEND: 0}
#: the element-wise ops of the multi-head GELU block, which calibration measures and the estimator prices
ELEMENTWISE_KINDS = (OpKind.LAYERNORM, OpKind.SOFTMAX, OpKind.GELU, OpKind.ADD)

#: the combine, per source shard: 2 FLOPs per output element (multiply by the weight, add) and 4 per
#: (query, head) row (max, subtract, exp and add for LSE = log Σ exp(LSE_i); the weight exp(LSE_i −
#: LSE) reuses them). Flash-Decoding's rescale (Dao et al. 2023), as TensorRT-LLM's helixPostProcess.
COMBINE_FLOPS_PER_ELEMENT = 2
COMBINE_FLOPS_PER_ROW = 4


class DecodeStrategy(StrEnum):
    """How a decode step is split over one model-parallel group of W GPUs (``helixlib.estimate.decode``).

    ``megatron-tp``: heads (and the FFN) split W ways; beyond W = K every extra GPU holds a copy of a KV head.
    ``helix``: the workbook's two levels, n head groups × m head-dim segments (n·m = W); the partial scores
    [B, H/n, S] are all-reduced over the m segments, so that collective grows with S.
    ``helix-kv``: Helix Parallelism (Bhatia et al., arXiv 2507.07120): TP_A head groups × KVP shards of the
    KV sequence (TP_A·KVP = W), one All-to-All of partial outputs and log-sum-exp per layer (independent of
    S), then the out-projection and the FFN tensor-parallel over all W."""

    MEGATRON_TP = "megatron-tp"
    HELIX = "helix"
    HELIX_KV = "helix-kv"


DECODE_STRATEGIES = tuple(DecodeStrategy)


class KvLayout(StrEnum):
    """What the KV cache stores per token and KV head: a key (d_qk) and a value (d_v), or one latent
    of d_qk whose first d_v columns are the value (absorbed multi-head latent attention, DeepSeek-V2/V3:
    576 = 512 latent + 64 RoPE; DeepSeek-AI, arXiv 2405.04434 §2.1)."""

    SEPARATE = "separate"
    LATENT = "latent"
