"""One rank's program: the block as a list of operators and communication points, with the
shape of every named tensor, FLOPs and bytes (the conventions of :mod:`helixlib.plan.ops`).

The block, per rank (g, s) for the default variants (shapes for ``helix-70b`` 4×4 in
brackets: B=1024, L=10000, D=8192, h_g=4, d=512, d_s=128, F/G=2048)::

    x [B,L,D] ─ ln1 ─ h1 ─┬ q_proj ─ q [B,L,h_g,d_s] ┐
                          ├ k_proj ─ k ──────────────┴ scores ─ s_part [B,h_g,L,L]
                          │                   all-reduce over dim_segment ─ s
                          └ v_proj ─ v ───────────── softmax(s/√d) ─ p ─ attn_v ─ o [B,L,h_g,d_s]
    out_proj (rows of Wo) ─ a_part [B,L,D] ─ all-reduce over world ─ a
    x1 = x + a + bo ─ ln2 ─ h2 ─ fc1 (cols of W1) ─ u [B,L,F/G] ─ gelu ─ z
    fc2 (rows of W2) ─ y_part [B,L,D] ─ all-reduce over world ─ y;  out = x1 + y + b2

Scores count the full L×L matrix (a masked dense kernel; a causal flash kernel would skip
about half).
"""

from __future__ import annotations

from helixlib.plan.model import ModelConfig
from helixlib.plan.names import FLOPS_PER_ELEMENT, MAPPINGS, Comm, Mapping, MeshDim, OpKind, OutputMode, QkMode
from helixlib.plan.ops import CommPoint, Op, Shape, numel
from helixlib.plan.partition import Partition
from helixlib.plan.shards import Shard


class _RankProgram:
    """Builds one rank's step list, tracking the shape of every named tensor."""

    def __init__(self, model: ModelConfig, part: Partition, rank: int):
        self.model, self.part, self.rank = model, part, rank
        self.beta = model.dtype_bytes
        self.shapes: dict[str, Shape] = {}
        self.steps: list[Op | CommPoint] = []

    def input(self, name: str, shape: Shape) -> str:
        self.shapes[name] = shape
        return name

    def op(self, name, kind, inputs, output, out_shape, params=(), gemm=None, per_element=None) -> str:
        in_shapes = tuple(self.shapes[t] for t in inputs) + tuple(s for _, s in params)
        if gemm is not None:
            b, M, K, N = gemm
            flops = 2 * b * M * K * N
            moved = b * (M * K + K * N + M * N) + sum(numel(s) for _, s in params if len(s) == 1)
        else:
            flops = (per_element or FLOPS_PER_ELEMENT[kind]) * numel(out_shape)
            moved = sum(numel(s) for s in in_shapes) + numel(out_shape)
        self.shapes[output] = out_shape
        self.steps.append(
            Op(name, kind, self.rank, tuple(inputs), tuple(params), output, in_shapes, out_shape,
               flops, moved * self.beta, gemm)
        )
        return output

    def comm(self, name, mapping, group, inp, output, out_shape, dim=None) -> str:
        ranks = self.part.group_of(group, self.rank)
        if len(ranks) == 1:  # a group of one rank communicates nothing: skip the step
            return inp
        out_shape = out_shape or self.shapes[inp]
        if MAPPINGS[mapping][0] is None:  # backward-only point: forward is the identity
            output = inp
        self.shapes[output] = out_shape
        self.steps.append(CommPoint(name, mapping, group, self.rank, ranks, inp, output, self.shapes[inp],
                                    out_shape, dim))
        return output


def rank_program(model: ModelConfig, part: Partition, sh: Shard) -> list[Op | CommPoint]:
    B, L, D, F = model.batch, model.seq_len, model.hidden, model.mlp_hidden
    n, m, G = part.head_groups, part.dim_segments, part.world_size
    H, d = model.heads, model.head_dim
    h_g, d_s, f_r = H // n, d // m, F // G
    w = h_g * d_s  # width of this rank's Q/K/V slice
    p = _RankProgram(model, part, sh.rank)

    x = p.input("x", (B, L, D))
    h1 = p.op("ln1", OpKind.LAYERNORM, [x], "h1", (B, L, D), params=[("ln1.weight", (D,)), ("ln1.bias", (D,))])
    h1 = p.comm(Comm.QKV_INPUT, Mapping.COPY_TO_REGION, MeshDim.WORLD, h1, None, None)
    qkv = {}
    for t in "qkv":
        qkv[t] = p.op(f"{t}_proj", OpKind.MATMUL, [h1], t, (B, L, h_g, d_s),
                      params=[(f"W{t}[:, cols]", (D, w)), (f"b{t}[cols]", (w,))], gemm=(1, B * L, D, w))
    q, k, v = qkv["q"], qkv["k"], qkv["v"]
    score_shape = (B, h_g, L, L)
    if part.qk_mode == QkMode.GATHER_QK:
        q = p.comm(Comm.Q_ALLGATHER, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, q, "q_full", (B, L, h_g, d), dim=3)
        k = p.comm(Comm.K_ALLGATHER, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, k, "k_full", (B, L, h_g, d), dim=3)
        k_width = p.shapes[q][3]
        s = p.op("scores", OpKind.MATMUL, [q, k], "s", score_shape, gemm=(B * h_g, L, k_width, L))
    else:
        s = p.op("scores", OpKind.MATMUL, [q, k], "s_part", score_shape, gemm=(B * h_g, L, d_s, L))
        if part.exact:  # segment_local skips the reduction: the plan's literal, wrong, dataflow
            s = p.comm(Comm.SCORES_ALLREDUCE, Mapping.ALL_REDUCE_SUM, MeshDim.DIM_SEGMENT, s, "s", None)
    pr = p.op("softmax", OpKind.SOFTMAX, [s], "p", score_shape)
    o = p.op("attn_v", OpKind.MATMUL, [pr, v], "o", (B, L, h_g, d_s), gemm=(B * h_g, L, L, d_s))
    if part.output == OutputMode.CONCAT:
        o = p.comm(Comm.O_GATHER_SEGMENTS, Mapping.ALL_GATHER_SUM, MeshDim.DIM_SEGMENT, o, "o_group",
                   (B, L, h_g, d), dim=3)
        o = p.comm(Comm.O_GATHER_GROUPS, Mapping.ALL_GATHER_SUM, MeshDim.HEAD_GROUP, o, "o_full", (B, L, H, d), dim=2)
        wc = D // G
        a = p.op("out_proj", OpKind.MATMUL, [o], "a_shard", (B, L, wc),
                 params=[("Wo[:, cols]", (D, wc)), ("bo[cols]", (wc,))], gemm=(1, B * L, D, wc))
        a = p.comm(Comm.OUT_ALLGATHER, Mapping.GATHER_FROM_REGION, MeshDim.WORLD, a, "a", (B, L, D), dim=2)
        x1 = p.op("residual1", OpKind.ADD, [x, a], "x1", (B, L, D))
    else:
        a = p.op("out_proj", OpKind.MATMUL, [o], "a_part", (B, L, D), params=[("Wo[rows, :]", (w, D))],
                 gemm=(1, B * L, w, D))
        a = p.comm(Comm.OUT_PROJ_ALLREDUCE, Mapping.REDUCE_FROM_REGION, MeshDim.WORLD, a, "a", None)
        x1 = p.op("residual1", OpKind.ADD, [x, a], "x1", (B, L, D), params=[("bo", (D,))], per_element=2)
    h2 = p.op("ln2", OpKind.LAYERNORM, [x1], "h2", (B, L, D), params=[("ln2.weight", (D,)), ("ln2.bias", (D,))])
    h2 = p.comm(Comm.FC1_INPUT, Mapping.COPY_TO_REGION, MeshDim.WORLD, h2, None, None)
    u = p.op("fc1", OpKind.MATMUL, [h2], "u", (B, L, f_r), params=[("W1[:, cols]", (D, f_r)), ("b1[cols]", (f_r,))],
             gemm=(1, B * L, D, f_r))
    z = p.op("gelu", OpKind.GELU, [u], "z", (B, L, f_r))
    y = p.op("fc2", OpKind.MATMUL, [z], "y_part", (B, L, D), params=[("W2[rows, :]", (f_r, D))],
             gemm=(1, B * L, f_r, D))
    y = p.comm(Comm.FC2_ALLREDUCE, Mapping.REDUCE_FROM_REGION, MeshDim.WORLD, y, "y", None)
    p.op("residual2", OpKind.ADD, [x1, y], "out", (B, L, D), params=[("b2", (D,))], per_element=2)
    return p.steps


