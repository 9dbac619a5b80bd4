"""One rank's program: the block as a list of operators and communication points, with the
shape of every named tensor, FLOPs and bytes (the conventions of :mod:`helixlib.plan.ops`).

The head-dim split, per rank (g, s) for the default variants (shapes for ``helix-70b`` 4×4 in
brackets: B=1024, L=10000, D=8192, h_g=4, d=512, d_s=128, F/G=2048)::

    x [B,L,D] ─ ln1 ─ h1 ─┬ q_proj ─ q [B,L,h_g,d_s] ┐
                          ├ k_proj ─ k ──────────────┴ scores ─ s_part [B,h_g,L,L]
                          │                   all-reduce over dim_segment ─ s
                          └ v_proj ─ v ───────────── softmax(s/√d) ─ p ─ attn_v ─ o [B,L,h_g,d_s]
    out_proj (rows of Wo) ─ a_part [B,L,D] ─ all-reduce over world ─ a
    x1 = x + a + bo ─ ln2 ─ h2 ─ fc1 (cols of W1) ─ u [B,L,F/G] ─ gelu ─ z
    fc2 (rows of W2) ─ y_part [B,L,D] ─ all-reduce over world ─ y;  out = x1 + y + b2

Grouped-query attention: k and v hold the group's KV heads (``[B,L,k_g,d_s]``), each query head
using KV head ``h // (H/K)``; V and Wo's rows use the segments of d_v. SwiGLU: ``fc1`` (gate, W1)
and ``fc3`` (up, W3), ``swiglu`` = silu(u)·u3, then fc2. Decode (``phase="decode"``): x is
``[B,1,D]``, one new token per sequence; ``k_append``/``v_append`` write its K and V after the
``S`` cached ones (the cache is ``[B,S,k_g,d_s]``: state, not a weight) and the scores are
``[B,h_g,1,S+1]`` — the partial-score all-reduce grows with S.

Scores count the full L×L matrix (a masked dense kernel; a causal flash kernel would skip
about half). The KV-shard program is :mod:`helixlib.plan.kv_program`.
"""

from __future__ import annotations

from helixlib.plan.model import ModelConfig
from helixlib.plan.names import (
    FLOPS_PER_ELEMENT,
    MAPPINGS,
    Comm,
    Mapping,
    MeshDim,
    OpKind,
    OutputMode,
    QkMode,
    StepPhase,
)
from helixlib.plan.ops import CommPoint, Op, Shape, numel
from helixlib.plan.partition import Partition
from helixlib.plan.shards import Shard


class RankProgram:
    """Builds one rank's step list, tracking the shape of every named tensor."""

    def __init__(self, model: ModelConfig, part: Partition, rank: int):
        self.model, self.part, self.rank = model, part, rank
        self.beta = model.dtype_bytes
        self.shapes: dict[str, Shape] = {}
        self.steps: list[Op | CommPoint] = []

    def input(self, name: str, shape: Shape) -> str:
        self.shapes[name] = shape
        return name

    def op(self, name, kind, inputs, output, out_shape, params=(), gemm=None, per_element=None, flops=None,
           nbytes=None) -> str:
        """Append an operator. ``flops``/``nbytes`` override the conventions (a combine, an append)."""
        in_shapes = tuple(self.shapes[t] for t in inputs) + tuple(s for _, s in params)
        if gemm is not None:
            b, M, K, N = gemm
            flops = 2 * b * M * K * N
            moved = b * (M * K + K * N + M * N) + sum(numel(s) for _, s in params if len(s) == 1)
        else:
            if flops is None:
                flops = (FLOPS_PER_ELEMENT[kind] if per_element is None else per_element) * numel(out_shape)
            moved = sum(numel(s) for s in in_shapes) + numel(out_shape)
        self.shapes[output] = out_shape
        self.steps.append(
            Op(name, kind, self.rank, tuple(inputs), tuple(params), output, in_shapes, out_shape,
               flops, moved * self.beta if nbytes is None else nbytes, gemm)
        )
        return output

    def comm(self, name, mapping, group, inp, output, out_shape, dim=None, dtype_bytes=None) -> str:
        ranks = self.part.group_of(group, self.rank)
        if len(ranks) == 1:  # a group of one rank communicates nothing: skip the step
            return inp
        out_shape = out_shape or self.shapes[inp]
        if MAPPINGS[mapping][0] is None:  # backward-only point: forward is the identity
            output = inp
        self.shapes[output] = out_shape
        self.steps.append(CommPoint(name, mapping, group, self.rank, ranks, inp, output, self.shapes[inp],
                                    out_shape, dim, dtype_bytes))
        return output

    def append_kv(self, t: str, new: str, cached: Shape, appended: bool) -> str:
        """Decode: ``{t}_append`` writes the new token's K or V after the ``cached`` positions
        (only where ``appended``: a KV shard that does not own the position keeps its cache)."""
        out = (cached[0], cached[1] + int(appended), *cached[2:])
        moved = numel(self.shapes[new]) * self.beta if appended else 0
        return self.op(f"{t}_append", OpKind.KV_APPEND, [new], f"{t}_all", out, params=[(f"{t}_cache", cached)],
                       nbytes=moved)


def row_parallel_out(p: RankProgram, x: str, o: str, width: int, tokens: int) -> str:
    """out_proj on this rank's ``width`` rows of Wo, all-reduced over the world, then the residual
    with bo added once: x1 [B, tokens, D]."""
    B, D = p.model.batch, p.model.hidden
    a = p.op("out_proj", OpKind.MATMUL, [o], "a_part", (B, tokens, D), params=[("Wo[rows, :]", (width, D))],
             gemm=(1, B * tokens, width, D))
    a = p.comm(Comm.OUT_PROJ_ALLREDUCE, Mapping.REDUCE_FROM_REGION, MeshDim.WORLD, a, "a", None)
    return p.op("residual1", OpKind.ADD, [x, a], "x1", (B, tokens, D), params=[("bo", (D,))], per_element=2)


def mlp_steps(p: RankProgram, x1: str, tokens: int) -> str:
    """LN2, FC1 (and FC3) column parallel, GELU (or SwiGLU), FC2 row parallel over all ranks, residual."""
    model = p.model
    B, D, f_r = model.batch, model.hidden, model.mlp_hidden // p.part.world_size
    h2 = p.op("ln2", OpKind.LAYERNORM, [x1], "h2", (B, tokens, D), params=[("ln2.weight", (D,)), ("ln2.bias", (D,))])
    h2 = p.comm(Comm.FC1_INPUT, Mapping.COPY_TO_REGION, MeshDim.WORLD, h2, None, None)
    u = p.op("fc1", OpKind.MATMUL, [h2], "u", (B, tokens, f_r),
             params=[("W1[:, cols]", (D, f_r)), ("b1[cols]", (f_r,))], gemm=(1, B * tokens, D, f_r))
    if model.mlp == "swiglu":
        u3 = p.op("fc3", OpKind.MATMUL, [h2], "u3", (B, tokens, f_r),
                  params=[("W3[:, cols]", (D, f_r)), ("b3[cols]", (f_r,))], gemm=(1, B * tokens, D, f_r))
        z = p.op("swiglu", OpKind.SWIGLU, [u, u3], "z", (B, tokens, f_r))
    else:
        z = p.op("gelu", OpKind.GELU, [u], "z", (B, tokens, f_r))
    y = p.op("fc2", OpKind.MATMUL, [z], "y_part", (B, tokens, D), params=[("W2[rows, :]", (f_r, D))],
             gemm=(1, B * tokens, f_r, D))
    y = p.comm(Comm.FC2_ALLREDUCE, Mapping.REDUCE_FROM_REGION, MeshDim.WORLD, y, "y", None)
    return p.op("residual2", OpKind.ADD, [x1, y], "out", (B, tokens, D), params=[("b2", (D,))], per_element=2)


def rank_program(model: ModelConfig, part: Partition, sh: Shard, phase: str = StepPhase.PREFILL,
                 context: int | None = None) -> list[Op | CommPoint]:
    """Rank ``sh.rank``'s program; decode at ``context`` cached positions (default seq_len)."""
    if part.kv:
        from helixlib.plan.kv_program import kv_rank_program

        return kv_rank_program(model, part, sh, phase, context)
    decode = phase == StepPhase.DECODE
    S = model.seq_len if context is None else context
    B, D, H = model.batch, model.hidden, model.heads
    Lq, Lk = (1, S + 1) if decode else (S, S)
    n, m, G = part.head_groups, part.dim_segments, part.world_size
    h_g, k_g = H // n, sh.kv_heads[1] - sh.kv_heads[0]
    dq, dv = model.head_dim_qk, model.head_dim_v
    dq_s, dv_s = dq // m, dv // m
    p = RankProgram(model, part, sh.rank)

    x = p.input("x", (B, Lq, D))
    h1 = p.op("ln1", OpKind.LAYERNORM, [x], "h1", (B, Lq, D), params=[("ln1.weight", (D,)), ("ln1.bias", (D,))])
    h1 = p.comm(Comm.QKV_INPUT, Mapping.COPY_TO_REGION, MeshDim.WORLD, h1, None, None)
    qkv = {}
    for t, heads, width in (("q", h_g, dq_s), ("k", k_g, dq_s), ("v", k_g, dv_s)):
        w = heads * width
        qkv[t] = p.op(f"{t}_proj", OpKind.MATMUL, [h1], t, (B, Lq, heads, width),
                      params=[(f"W{t}[:, cols]", (D, w)), (f"b{t}[cols]", (w,))], gemm=(1, B * Lq, D, w))
    q, k, v = qkv["q"], qkv["k"], qkv["v"]
    k_width = dq_s
    if part.qk_mode == QkMode.GATHER_QK:
        q = p.comm(Comm.Q_ALLGATHER, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, q, "q_full", (B, Lq, h_g, dq), dim=3)
        k = p.comm(Comm.K_ALLGATHER, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, k, "k_full", (B, Lq, k_g, dq), dim=3)
        k_width = p.shapes[k][3]
    if decode:
        k = p.append_kv("k", k, (B, S, k_g, k_width), True)
        v = p.append_kv("v", v, (B, S, k_g, dv_s), True)
    score_shape = (B, h_g, Lq, Lk)
    s = p.op("scores", OpKind.MATMUL, [q, k], "s" if part.qk_mode == QkMode.GATHER_QK else "s_part", score_shape,
             gemm=(B * h_g, Lq, k_width, Lk))
    # segment_local skips the reduction: the plan's literal, wrong, dataflow
    if part.qk_mode != QkMode.GATHER_QK and part.exact:
        s = p.comm(Comm.SCORES_ALLREDUCE, Mapping.ALL_REDUCE_SUM, MeshDim.DIM_SEGMENT, s, "s", None)
    pr = p.op("softmax", OpKind.SOFTMAX, [s], "p", score_shape)
    o = p.op("attn_v", OpKind.MATMUL, [pr, v], "o", (B, Lq, h_g, dv_s), gemm=(B * h_g, Lq, Lk, dv_s))
    if part.output == OutputMode.CONCAT:
        o = p.comm(Comm.O_GATHER_SEGMENTS, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, o, "o_group",
                   (B, Lq, h_g, dv), dim=3)
        o = p.comm(Comm.O_GATHER_GROUPS, Mapping.ALL_GATHER_SUM, MeshDim.HEAD_GROUP, o, "o_full", (B, Lq, H, dv),
                   dim=2)
        wc = D // G
        a = p.op("out_proj", OpKind.MATMUL, [o], "a_shard", (B, Lq, wc),
                 params=[("Wo[:, cols]", (H * dv, wc)), ("bo[cols]", (wc,))], gemm=(1, B * Lq, H * dv, wc))
        a = p.comm(Comm.OUT_ALLGATHER, Mapping.GATHER_FROM_REGION, MeshDim.WORLD, a, "a", (B, Lq, D), dim=2)
        x1 = p.op("residual1", OpKind.ADD, [x, a], "x1", (B, Lq, D))
    else:
        x1 = row_parallel_out(p, x, o, h_g * dv_s, Lq)
    mlp_steps(p, x1, Lq)
    return p.steps
