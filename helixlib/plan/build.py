"""The Plan: one pre-LN transformer block split over n head groups × m dim segments.

A ``Plan`` is computed from ``(ModelConfig, Partition)`` and is the single source of
truth of the workbook: per-rank shards, the per-rank program (operators and
communication points, with shapes, FLOPs and bytes), the ordered collectives (forward
and backward) and the memory per rank. The DAG, the estimator, the distributed layer's
trace and the audit are all compared against it.

The block, per rank (g, s) for the default variants (shapes for ``helix-70b`` 4×4 in
brackets: B=1024, L=10000, D=8192, h_g=4, d=512, d_s=128, F/G=2048)::

    x [B,L,D] ─ ln1 ─ h1 ─┬ q_proj ─ q [B,L,h_g,d_s] ┐
                          ├ k_proj ─ k ──────────────┴ scores ─ s_part [B,h_g,L,L]
                          │                   all-reduce over dim_segment ─ s
                          └ v_proj ─ v ───────────── softmax(s/√d) ─ p ─ attn_v ─ o [B,L,h_g,d_s]
    out_proj (rows of Wo) ─ a_part [B,L,D] ─ all-reduce over world ─ a
    x1 = x + a + bo ─ ln2 ─ h2 ─ fc1 (cols of W1) ─ u [B,L,F/G] ─ gelu ─ z
    fc2 (rows of W2) ─ y_part [B,L,D] ─ all-reduce over world ─ y;  out = x1 + y + b2

Conventions: a matmul ``[M,K]·[K,N]`` is ``2·M·K·N`` FLOPs (2 per multiply-add; a fused
bias add is not counted, as in ``torch.utils.flop_counter``) and moves
``β·(MK + KN + MN)`` bytes. Scores count the full L×L matrix (a masked dense kernel;
a causal flash kernel would skip about half). LayerNorm is 9 FLOPs per element,
softmax (with scale and mask) 5 per score, GELU 8 per element, an add 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from helixlib.plan.model import ModelConfig
from helixlib.plan.partition import Partition
from helixlib.plan.shards import Shard, make_shards

Shape = tuple[int, ...]

FLOPS_PER_ELEMENT = {"layernorm": 9, "softmax": 5, "gelu": 8, "add": 1}

#: Megatron-style paired collectives: mapping -> (forward kind, backward kind).
#: Which backward a reduction needs depends on whether what follows it is replicated
#: (REFERENCE §1): after a row-parallel all-reduce everything is replicated, so its
#: backward is the identity; the partial scores feed a rank-local P·V_s, so their
#: all-reduce needs an all-reduce in backward too.
MAPPINGS: dict[str, tuple[str | None, str | None]] = {
    "copy_to_region": (None, "all_reduce"),  # f: replicated input into a column-parallel op
    "reduce_from_region": ("all_reduce", None),  # g: row-parallel output, replicated after
    "all_reduce_sum": ("all_reduce", "all_reduce"),  # partial scores, rank-local use after
    "all_gather_sum": ("all_gather", "reduce_scatter"),  # gathered, used by rank-local partial ops
    "gather_from_region": ("all_gather", None),  # gathered, replicated after: backward splits
}


def _numel(shape: Shape) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class Op:
    """One operator on one rank. ``input_shapes`` lists activations, then parameters."""

    name: str
    kind: str  # matmul | layernorm | softmax | gelu | add
    rank: int
    inputs: tuple[str, ...]  # activation tensor names on this rank
    params: tuple[tuple[str, Shape], ...]
    output: str
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    flops: int
    bytes: int
    gemm: tuple[int, int, int, int] | None = None  # (batch, M, K, N) for kind == "matmul"

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "kind": self.kind,
            "rank": self.rank,
            "inputs": list(self.inputs),
            "params": [p for p, _ in self.params],
            "input_shapes": [list(s) for s in self.input_shapes],
            "output": self.output,
            "output_shape": list(self.output_shape),
            "flops": self.flops,
            "bytes": self.bytes,
        }
        if self.gemm is not None:
            d["gemm"] = dict(zip(("batch", "m", "k", "n"), self.gemm))
        return d


@dataclass(frozen=True)
class CommPoint:
    """A communication point in one rank's program (a Megatron-style mapping)."""

    name: str
    mapping: str
    group: str  # mesh dim: "dim_segment", "head_group" or "world"
    rank: int
    ranks: tuple[int, ...]  # this rank's process group
    input: str
    output: str
    input_shape: Shape
    output_shape: Shape
    dim: int | None = None  # concatenation dim of an all-gather

    @property
    def forward_kind(self) -> str | None:
        return MAPPINGS[self.mapping][0]

    @property
    def backward_kind(self) -> str | None:
        return MAPPINGS[self.mapping][1]

    @property
    def full_shape(self) -> Shape:
        """The buffer a collective moves, nccl-tests' "size": the gathered / reduced tensor."""
        return self.output_shape if _numel(self.output_shape) >= _numel(self.input_shape) else self.input_shape


@dataclass(frozen=True)
class Collective:
    """One collective call on one process group. ``elements`` is the full buffer
    (the all-reduced tensor, the gathered output, the reduce-scattered input)."""

    index: int
    name: str
    kind: str  # all_reduce | all_gather | reduce_scatter
    phase: str  # forward | backward
    group: str
    ranks: tuple[int, ...]
    elements: int
    dtype_bytes: int
    shape: Shape

    @property
    def bytes(self) -> int:
        return self.elements * self.dtype_bytes

    @property
    def bus_factor(self) -> float:
        """nccl-tests bus factor: bytes each rank sends = bus_factor × bytes (ring algorithms)."""
        p = len(self.ranks)
        return 2 * (p - 1) / p if self.kind == "all_reduce" else (p - 1) / p

    @property
    def bytes_sent_per_rank(self) -> int:
        return round(self.bus_factor * self.bytes)

    def signature(self) -> tuple:
        """What a recorded trace must reproduce: (phase, name, kind, ranks, elements)."""
        return (self.phase, self.name, self.kind, self.ranks, self.elements)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "phase": self.phase,
            "group": self.group,
            "ranks": list(self.ranks),
            "elements": self.elements,
            "dtype_bytes": self.dtype_bytes,
            "bytes": self.bytes,
            "bytes_sent_per_rank": self.bytes_sent_per_rank,
            "shape": list(self.shape),
        }


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds for one block (nothing freed, no recompute: what autograd keeps).

    Tensors of score shape [B, h_g, L, L] count as ``score_bytes`` wherever they come
    from; other operator outputs as ``activation_bytes``; other collective outputs as
    ``buffer_bytes`` (receive buffers).
    """

    rank: int
    weights_bytes: int
    activation_bytes: int
    score_bytes: int
    buffer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.score_bytes + self.buffer_bytes

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "weights_bytes": self.weights_bytes,
            "activation_bytes": self.activation_bytes,
            "score_bytes": self.score_bytes,
            "buffer_bytes": self.buffer_bytes,
            "total_bytes": self.total_bytes,
        }


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
            moved = b * (M * K + K * N + M * N) + sum(_numel(s) for _, s in params if len(s) == 1)
        else:
            flops = (per_element or FLOPS_PER_ELEMENT[kind]) * _numel(out_shape)
            moved = sum(_numel(s) for s in in_shapes) + _numel(out_shape)
        self.shapes[output] = out_shape
        self.steps.append(
            Op(name, kind, self.rank, tuple(inputs), tuple(params), output, in_shapes, out_shape,
               flops, moved * self.beta, gemm)
        )
        return output

    def comm(self, name, mapping, group, inp, output, out_shape, dim=None) -> str:
        ranks = tuple(self.part.group_ranks(group, self.rank))
        if len(ranks) == 1:  # a group of one rank communicates nothing: skip the step
            return inp
        out_shape = out_shape or self.shapes[inp]
        if MAPPINGS[mapping][0] is None:  # backward-only point: forward is the identity
            output = inp
        self.shapes[output] = out_shape
        self.steps.append(CommPoint(name, mapping, group, self.rank, ranks, inp, output, self.shapes[inp], out_shape, dim))
        return output


def _rank_program(model: ModelConfig, part: Partition, sh: Shard) -> list[Op | CommPoint]:
    B, L, D, F = model.batch, model.seq_len, model.hidden, model.mlp_hidden
    n, m, G = part.head_groups, part.dim_segments, part.world_size
    H, d = model.heads, model.head_dim
    h_g, d_s, f_r = H // n, d // m, F // G
    w = h_g * d_s  # width of this rank's Q/K/V slice
    p = _RankProgram(model, part, sh.rank)

    x = p.input("x", (B, L, D))
    h1 = p.op("ln1", "layernorm", [x], "h1", (B, L, D), params=[("ln1.weight", (D,)), ("ln1.bias", (D,))])
    h1 = p.comm("qkv_input", "copy_to_region", "world", h1, None, None)
    qkv = {}
    for t in "qkv":
        qkv[t] = p.op(f"{t}_proj", "matmul", [h1], t, (B, L, h_g, d_s),
                      params=[(f"W{t}[:, cols]", (D, w)), (f"b{t}[cols]", (w,))], gemm=(1, B * L, D, w))
    q, k, v = qkv["q"], qkv["k"], qkv["v"]
    score_shape = (B, h_g, L, L)
    if part.qk_mode == "gather_qk":
        q = p.comm("q_allgather", "all_gather_sum", "dim_segment", q, "q_full", (B, L, h_g, d), dim=3)
        k = p.comm("k_allgather", "all_gather_sum", "dim_segment", k, "k_full", (B, L, h_g, d), dim=3)
        k_width = p.shapes[q][3]
        s = p.op("scores", "matmul", [q, k], "s", score_shape, gemm=(B * h_g, L, k_width, L))
    else:
        s = p.op("scores", "matmul", [q, k], "s_part", score_shape, gemm=(B * h_g, L, d_s, L))
        if part.exact:  # segment_local skips the reduction: the plan's literal, wrong, dataflow
            s = p.comm("scores_allreduce", "all_reduce_sum", "dim_segment", s, "s", None)
    pr = p.op("softmax", "softmax", [s], "p", score_shape)
    o = p.op("attn_v", "matmul", [pr, v], "o", (B, L, h_g, d_s), gemm=(B * h_g, L, L, d_s))
    if part.output == "concat":
        o = p.comm("o_gather_segments", "all_gather_sum", "dim_segment", o, "o_group", (B, L, h_g, d), dim=3)
        o = p.comm("o_gather_groups", "all_gather_sum", "head_group", o, "o_full", (B, L, H, d), dim=2)
        wc = D // G
        a = p.op("out_proj", "matmul", [o], "a_shard", (B, L, wc),
                 params=[("Wo[:, cols]", (D, wc)), ("bo[cols]", (wc,))], gemm=(1, B * L, D, wc))
        a = p.comm("out_allgather", "gather_from_region", "world", a, "a", (B, L, D), dim=2)
        x1 = p.op("residual1", "add", [x, a], "x1", (B, L, D))
    else:
        a = p.op("out_proj", "matmul", [o], "a_part", (B, L, D), params=[("Wo[rows, :]", (w, D))],
                 gemm=(1, B * L, w, D))
        a = p.comm("out_proj_allreduce", "reduce_from_region", "world", a, "a", None)
        x1 = p.op("residual1", "add", [x, a], "x1", (B, L, D), params=[("bo", (D,))], per_element=2)
    h2 = p.op("ln2", "layernorm", [x1], "h2", (B, L, D), params=[("ln2.weight", (D,)), ("ln2.bias", (D,))])
    h2 = p.comm("fc1_input", "copy_to_region", "world", h2, None, None)
    u = p.op("fc1", "matmul", [h2], "u", (B, L, f_r), params=[("W1[:, cols]", (D, f_r)), ("b1[cols]", (f_r,))],
             gemm=(1, B * L, D, f_r))
    z = p.op("gelu", "gelu", [u], "z", (B, L, f_r))
    y = p.op("fc2", "matmul", [z], "y_part", (B, L, D), params=[("W2[rows, :]", (f_r, D))], gemm=(1, B * L, f_r, D))
    y = p.comm("fc2_allreduce", "reduce_from_region", "world", y, "y", None)
    p.op("residual2", "add", [x1, y], "out", (B, L, D), params=[("b2", (D,))], per_element=2)
    return p.steps


@dataclass
class Plan:
    """Everything about one (model, partition): shards, programs, collectives, memory."""

    model: ModelConfig
    partition: Partition
    shards: list[Shard]
    programs: list[list[Op | CommPoint]]  # index = rank
    collectives: list[Collective] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.partition.world_size

    @property
    def ops(self) -> list[Op]:
        """All operators, rank-major, in program order."""
        return [s for prog in self.programs for s in prog if isinstance(s, Op)]

    def rank_ops(self, rank: int) -> list[Op]:
        return [s for s in self.programs[rank] if isinstance(s, Op)]

    def rank_comms(self, rank: int) -> list[CommPoint]:
        return [s for s in self.programs[rank] if isinstance(s, CommPoint)]

    def collectives_for_rank(self, rank: int, phase: str | None = None) -> list[Collective]:
        """The collectives ``rank`` takes part in, in the order it calls them."""
        return [c for c in self.collectives if rank in c.ranks and (phase is None or c.phase == phase)]

    def rank_flops(self, rank: int, kind: str | None = None) -> int:
        return sum(o.flops for o in self.rank_ops(rank) if kind is None or o.kind == kind)

    def op(self, rank: int, name: str) -> Op:
        for o in self.rank_ops(rank):
            if o.name == name:
                return o
        raise KeyError(f"rank {rank} has no op {name!r}")

    def memory(self) -> list[RankMemory]:
        """Per-rank bytes for one block (see RankMemory for what counts where)."""
        beta = self.model.dtype_bytes
        out = []
        for r, prog in enumerate(self.programs):
            weights = act = scores = buffers = 0
            for op in self.rank_ops(r):
                weights += sum(_numel(s) for _, s in op.params) * beta
            for step in prog:
                size = _numel(step.output_shape) * beta
                if len(step.output_shape) == 4 and step.output_shape[2:] == (self.model.seq_len,) * 2:
                    scores += size
                elif isinstance(step, Op):
                    act += size
                elif step.output != step.input:
                    buffers += size
            out.append(RankMemory(r, weights, act, scores, buffers))
        return out

    def to_dict(self, checks: list | None = None) -> dict:
        part = self.partition
        d = {
            "model": self.model.to_dict(),
            "partition": {
                "head_groups": part.head_groups,
                "dim_segments": part.dim_segments,
                "qk_mode": part.qk_mode,
                "output": part.output,
            },
            "world_size": self.world_size,
            "ranks": [s.to_dict() for s in self.shards],
            "ops": [o.to_dict() for o in self.ops],
            "collectives": [c.to_dict() for c in self.collectives],
            "memory": [m.to_dict() for m in self.memory()],
        }
        if checks is not None:
            d["checks"] = [c.to_dict() for c in checks]
        return d


def _collectives(part: Partition, programs: list[list[Op | CommPoint]], dtype_bytes: int) -> list[Collective]:
    """Every rank runs the same program, so step i is the same communication point on
    every rank; one Collective per distinct process group of that point. Backward runs
    the points in reverse (autograd visits a chain backwards)."""
    G = part.world_size
    points = [[s for s in programs[r] if isinstance(s, CommPoint)] for r in range(G)]
    out: list[Collective] = []

    def emit(i: int, phase: str, kind: str | None, name: str):
        if kind is None:
            return
        seen = set()
        for r in range(G):
            c = points[r][i]
            if c.ranks in seen:
                continue
            seen.add(c.ranks)
            full = c.full_shape
            out.append(Collective(len(out), name, kind, phase, c.group, c.ranks, _numel(full), dtype_bytes, full))

    for i, c in enumerate(points[0]):
        emit(i, "forward", c.forward_kind, c.name)
    for i in reversed(range(len(points[0]))):
        c = points[0][i]
        emit(i, "backward", c.backward_kind, f"{c.name}.backward")
    return out


def build_plan(model: ModelConfig, part: Partition, world_size: int | None = None) -> Plan:
    """Validate ``part`` against ``model`` (and ``world_size`` if given) and compute the Plan."""
    part.validate(model, world_size)
    shards = make_shards(model, part)
    programs = [_rank_program(model, part, sh) for sh in shards]
    plan = Plan(model, part, shards, programs)
    plan.collectives = _collectives(part, programs, model.dtype_bytes)
    return plan
