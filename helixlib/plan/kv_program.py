"""One rank's program for KV-sequence shards (Helix Parallelism; Bhatia et al., arXiv 2507.07120,
§2): n head groups × p KV shards, rank (g, j). The attention of a head group runs on its p
shards, each over the KV positions it owns; the FFN runs tensor-parallel over all N = n·p ranks.

Per rank (B batch, L_q queries: L in prefill, 1 in decode; h_g = H/n query heads, k_g KV heads,
h_o = h_g/p, L_j the KV positions this shard owns)::

    x [B,L_q,D] ─ ln1 ─ h1 ─┬ q_proj (all L_q queries: the same on the p shards) ─ q [B,L_q,h_g,d_qk]
                            ├ k_proj, v_proj: prefill, the rows of h1 at the owned positions
                            │   ─ k [B,L_j,k_g,d_qk], v [B,L_j,k_g,d_v]; decode, the new token on
                            │   every shard (redundant by design), k_append/v_append on the owner
    scores (global positions masked causally) ─ s [B,h_g,L_q,L_j] ─┬ softmax ─ p ─ attn_v ─ o_part
                                                                   └ lse [B,L_q,h_g] (−inf: no key)
    o_all_to_all over kv_shard: o_part [B,L_q,h_g,d_v] → o_parts [B,L_q,p,h_o,d_v] (split by head)
    lse_all_to_all: lse [B,L_q,h_g] → lse_parts [B,L_q,p,h_o]  (fp32, fp64 in an fp64 run)
    combine: LSE = log Σ_i exp(LSE_i), o = Σ_i exp(LSE_i − LSE) · O_i ─ o [B,L_q,h_o,d_v]  exact
    out_proj (rows of Wo for the h_o heads) ─ all-reduce over world ─ x1 ─ MLP over all N ranks

The All-to-All moves B·L_q·h_g·d_v elements per rank whatever the KV length: in decode it does
not grow with the context S (the head-dim split's score all-reduce does). With HOP-B (``hop_b`` =
c > 1, decode) the attention and both All-to-Alls run per batch chunk of B/c sequences (names
``scores.c0`` …), so chunk i's All-to-All can overlap chunk i+1's attention.

Backward (prefill): Wq/Wk/Wv of a head group are the same on its p shards, each shard's gradient
partial: ``qkv_grad_allreduce`` sums them over kv_shard after backward (data-parallel style,
see :func:`grad_sync_points`); dh1 is partial on every rank and all-reduced over the world as in
the head-dim split.
"""

from __future__ import annotations

from helixlib.plan import kv_layout
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import (
    COMBINE_FLOPS_PER_ELEMENT,
    COMBINE_FLOPS_PER_ROW,
    Comm,
    Mapping,
    MeshDim,
    OpKind,
    StepPhase,
)
from helixlib.plan.ops import CommPoint, Op, numel
from helixlib.plan.partition import Partition
from helixlib.plan.program import RankProgram, mlp_steps, row_parallel_out
from helixlib.plan.shards import Shard


def lse_bytes(dtype_bytes: int) -> int:
    """Bytes per log-sum-exp value sent: fp32 as TensorRT-LLM's softmax stats, fp64 in an fp64 run
    (a bf16 LSE would put ~0.4 % into every combine weight)."""
    return max(dtype_bytes, 4)


def new_token_owner(model: ModelConfig, part: Partition, context: int) -> int:
    """The KV shard that owns position ``context`` (the token a decode step appends)."""
    return kv_layout.owner(context, model.seq_len, part.kv_shards, part.tokens_per_block, part.kv_placement)


def kv_rank_program(model: ModelConfig, part: Partition, sh: Shard, phase: str = StepPhase.PREFILL,
                    context: int | None = None) -> list[Op | CommPoint]:
    """Rank ``sh.rank``'s program (``sh.positions``: the KV positions of the context it owns)."""
    decode = phase == StepPhase.DECODE
    S = model.seq_len if context is None else context
    B, D, H = model.batch, model.hidden, model.heads
    Lq = 1 if decode else S
    n, pk = part.head_groups, part.kv_shards
    h_g, k_g = H // n, sh.kv_heads[1] - sh.kv_heads[0]
    h_o = h_g // pk
    dq, dv = model.head_dim_qk, model.head_dim_v
    L_j = sh.kv_length
    p = RankProgram(model, part, sh.rank)

    x = p.input("x", (B, Lq, D))
    h1 = p.op("ln1", OpKind.LAYERNORM, [x], "h1", (B, Lq, D), params=[("ln1.weight", (D,)), ("ln1.bias", (D,))])
    h1 = p.comm(Comm.QKV_INPUT, Mapping.COPY_TO_REGION, MeshDim.WORLD, h1, None, None)
    rows = Lq if decode else L_j  # decode: the new token on every shard; prefill: the owned positions
    qkv = {}
    for t, heads, width, M in (("q", h_g, dq, Lq), ("k", k_g, dq, rows), ("v", k_g, dv, rows)):
        w = heads * width
        qkv[t] = p.op(f"{t}_proj", OpKind.MATMUL, [h1], t, (B, M, heads, width),
                      params=[(f"W{t}[:, cols]", (D, w)), (f"b{t}[cols]", (w,))], gemm=(1, B * M, D, w))
    q, k, v = qkv["q"], qkv["k"], qkv["v"]
    L_k = L_j
    if decode:
        mine = new_token_owner(model, part, S) == sh.kv_shard
        k = p.append_kv("k", k, (B, L_j, k_g, dq), mine)
        v = p.append_kv("v", v, (B, L_j, k_g, dv), mine)
        L_k = L_j + int(mine)
    chunks = part.hop_b
    Bc = B // chunks
    received = []
    for i in range(chunks):
        c = f".c{i}" if chunks > 1 else ""
        s = p.op(f"scores{c}", OpKind.MATMUL, [q, k], f"s{c}", (Bc, h_g, Lq, L_k), gemm=(Bc * h_g, Lq, dq, L_k))
        pr = p.op(f"softmax{c}", OpKind.SOFTMAX, [s], f"p{c}", (Bc, h_g, Lq, L_k))
        lse = p.op(f"lse{c}", OpKind.LSE, [s], f"lse{c}", (Bc, Lq, h_g))
        o = p.op(f"attn_v{c}", OpKind.MATMUL, [pr, v], f"o_part{c}", (Bc, Lq, h_g, dv), gemm=(Bc * h_g, Lq, L_k, dv))
        received.append(p.comm(f"{Comm.O_ALL_TO_ALL}{c}", Mapping.ALL_TO_ALL, MeshDim.KV_SHARD, o, f"o_parts{c}",
                               (Bc, Lq, pk, h_o, dv)))
        received.append(p.comm(f"{Comm.LSE_ALL_TO_ALL}{c}", Mapping.ALL_TO_ALL, MeshDim.KV_SHARD, lse,
                               f"lse_parts{c}", (Bc, Lq, pk, h_o), dtype_bytes=lse_bytes(p.beta)))
    out_shape = (B, Lq, h_o, dv)
    o_in = sum(numel(p.shapes[t]) for t in received[::2])
    flops = pk * (COMBINE_FLOPS_PER_ELEMENT * numel(out_shape) + COMBINE_FLOPS_PER_ROW * B * Lq * h_o)
    moved = (o_in + numel(out_shape)) * p.beta + o_in // dv * lse_bytes(p.beta)
    o = p.op("combine", OpKind.COMBINE, received, "o", out_shape, flops=flops, nbytes=moved)
    mlp_steps(p, row_parallel_out(p, x, o, h_o * dv, Lq), Lq)
    return p.steps


def grad_sync_points(model: ModelConfig, part: Partition, sh: Shard) -> list[CommPoint]:
    """The weight-gradient all-reduces a training step adds after backward, for weights a rank
    shares with others (forward: nothing): Wq/Wk/Wv and biases over the p KV shards of a head
    group (``qkv_grad_allreduce``), then Wk/Wv and biases over the n/K head groups holding the
    same KV heads when n > K (``kv_grad_allreduce``). Elements: the flattened gradients."""
    D, m = model.hidden, part.dim_segments
    h_g, k_g = sh.heads[1] - sh.heads[0], sh.kv_heads[1] - sh.kv_heads[0]
    dq, dv = model.head_dim_qk // m, model.head_dim_v // m
    kv = (D + 1) * k_g * (dq + dv)
    points = []
    for name, group, elements in ((Comm.QKV_GRAD_ALLREDUCE, MeshDim.KV_SHARD, (D + 1) * h_g * dq + kv),
                                  (Comm.KV_GRAD_ALLREDUCE, MeshDim.KV_SHARE, kv)):
        ranks = part.group_of(group, sh.rank)
        if len(ranks) > 1:
            t = f"{name}_grads"
            points.append(CommPoint(str(name), Mapping.GRAD_SYNC, group, sh.rank, ranks, t, t, (elements,),
                                    (elements,)))
    return points
