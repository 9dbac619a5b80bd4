"""What one rank does for one block: the cost view of a Plan (or of another strategy).

A :class:`Program` is one rank's forward of one block for one micro-batch — operators
with FLOPs, bytes and GEMM dims, collectives with size, group size and nodes spanned —
plus the collectives its backward adds, the bytes of every activation tensor, and the
parameters the rank stores. ``program_from_plan`` reads it off a :class:`~helixlib.plan.build.Plan`
(FLOPs and bytes are the plan's own); ``helixlib.estimate.strategies`` writes the same thing in
closed form for arrays of configurations and for strategies that have no Plan.

Fields may be numbers or numpy arrays (one entry per configuration).

Conventions (used by ``helixlib.estimate.timing`` and ``helixlib.estimate.memory``):

* what backward keeps (autograd's saved tensors): a matmul its activation inputs, a
  LayerNorm and a GELU their input, a softmax its output, an add nothing, a fused
  attention kernel q, k, v, its output and the row log-sum-exp (LayerNorm statistics,
  ``8/(β·D)`` of the input, are left out);
* ``Overlap(phase, ops, fraction)`` marks a collective that can run while
  ``fraction`` of those ops' compute in that phase runs (``ops = ("*",)``: every op),
  e.g. Megatron's input-gradient all-reduce during the weight-gradient GEMM (half of
  the backward); collectives without one block the next op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from helixlib.core.errors import HelixInputError
from helixlib.estimate.hardware import Cluster
from helixlib.plan import Comm, CommPoint, Op, Plan

#: bytes of the fp32 row log-sum-exp a flash kernel keeps per (query, head)
LSE_BYTES = 4


@dataclass(frozen=True)
class Overlap:
    phase: str  # forward | backward (the window's ops run in this phase)
    ops: tuple[str, ...]  # op names, or ("*",) for every op of the block
    fraction: float = 1.0  # share of those ops' time available to hide the collective


@dataclass
class OpCost:
    name: str
    kind: str  # matmul | flash_attention | layernorm | softmax | gelu | add
    inputs: tuple[str, ...]  # activation tensors read
    output: str
    flops: object
    bytes: object
    gemm: tuple | None = None  # (batch, M, K, N) for matmuls
    saves: tuple[str, ...] = ()  # tensors kept for backward
    backward_bytes: object = None  # bytes its backward moves (element-wise ops); None: twice the forward's time
    selective: bool = False  # part of the attention core that selective recompute runs again in backward
    causal: bool = False  # a flash kernel that skips the masked half (its FLOPs are already halved)


@dataclass
class CommCost:
    name: str
    kind: str  # all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
    phase: str  # forward | backward
    group: str  # dim_segment | head_group | world | ...
    p: object  # group size
    nodes: object  # nodes the group spans
    bytes: object  # nccl-tests size, summed over `count` calls
    count: object = 1
    overlap: Overlap | None = None


@dataclass
class Program:
    """One rank, one block, one micro-batch: forward ops and collectives, backward collectives."""

    ops: list[OpCost]
    forward_comms: list[CommCost]
    backward_comms: list[CommCost]
    sizes: dict[str, object]  # bytes of each activation tensor
    weight_params: object  # parameters this rank stores for the block
    dtype_bytes: int = 2
    block_input: str = "x"  # what full recompute keeps per block
    communicators: object = 1  # NCCL communicators the rank uses
    extra_buffer_bytes: object = 0  # staging beyond NCCL's own: flash tile buffers, gathered weights
    backward_buffer_bytes: object = 0  # staging only a training step needs (unsharded gradients)
    notes: list[str] = field(default_factory=list)

    def op(self, name: str) -> OpCost:
        return next(o for o in self.ops if o.name == name)

    @property
    def comms(self) -> list[CommCost]:
        return self.forward_comms + self.backward_comms


def default_saves(kind: str, inputs: tuple[str, ...], output: str) -> tuple[str, ...]:
    """What autograd keeps for one op's backward (see the module docstring)."""
    if kind == "matmul":
        return tuple(inputs)
    if kind in ("layernorm", "gelu"):
        return tuple(inputs[:1])
    if kind == "softmax":
        return (output,)
    return ()


class ProgramBuilder:
    """Writes a Program op by op, tracking tensor sizes; shapes are numbers or arrays."""

    def __init__(self, dtype_bytes: int):
        self.beta = dtype_bytes
        self.ops: list[OpCost] = []
        self.forward: list[CommCost] = []
        self.backward: list[CommCost] = []
        self.sizes: dict[str, object] = {}
        self.params = 0

    def tensor(self, name: str, elements) -> str:
        self.sizes[name] = elements * self.beta
        return name

    def matmul(self, name, inputs, output, batch, M, K, N, weight: bool = True, bias=0, saves=None,
               selective=False) -> str:
        """``[batch] × [M,K]·[K,N]``: 2·batch·M·K·N FLOPs; a weight operand of K·N (+ bias) parameters."""
        flops = 2 * batch * M * K * N
        moved = batch * (M * K + K * N + M * N) + bias
        if weight:
            self.params = self.params + K * N + bias
        return self._op(name, "matmul", inputs, output, batch * M * N, flops, moved, (batch, M, K, N), saves,
                        selective=selective)

    def elementwise(self, name, kind, inputs, output, elements, flops_per_element, params=0, saves=None,
                    extra_bytes=0, backward_bytes=None, selective=False) -> str:
        """Reads every input (and ``params`` parameters), writes ``elements`` (and ``extra_bytes``, e.g. a
        dropout mask); FLOPs per output element. ``backward_bytes``: what its backward moves."""
        moved = sum(self.sizes[t] for t in inputs) / self.beta + params + elements
        self.params = self.params + params
        return self._op(name, kind, inputs, output, elements, flops_per_element * elements, moved, None, saves,
                        extra_bytes, backward_bytes, selective)

    def _op(self, name, kind, inputs, output, out_elements, flops, moved, gemm, saves, extra_bytes=0,
            backward_bytes=None, selective=False) -> str:
        inputs = tuple(inputs)
        self.tensor(output, out_elements)
        self.ops.append(OpCost(name, kind, inputs, output, flops, moved * self.beta + extra_bytes, gemm,
                               default_saves(kind, inputs, output) if saves is None else tuple(saves),
                               backward_bytes, selective))
        return output

    def comm(self, name, kind, group, p, nodes, nbytes, phase="forward", count=1, overlap=None,
             output: str | None = None, out_elements=None) -> str | None:
        (self.forward if phase == "forward" else self.backward).append(
            CommCost(name, kind, phase, group, p, nodes, nbytes, count, overlap))
        if output is not None:
            self.tensor(output, out_elements)
        return output

    def build(self, **kw) -> Program:
        return Program(self.ops, self.forward, self.backward, self.sizes, self.params, self.beta, **kw)


#: backward collectives that overlap with the weight-gradient half of the next op's backward
#: (Megatron's async input-gradient all-reduce): collective name -> ops
WGRAD_OVERLAP = {Comm.QKV_INPUT.backward(): ("q_proj", "k_proj", "v_proj"), Comm.FC1_INPUT.backward(): ("fc1",)}


def program_from_plan(plan: Plan, rank: int, cluster: Cluster) -> Program:
    """Rank ``rank``'s Program, read off the plan: its ops (FLOPs, bytes, GEMM dims as the plan
    counts them) and its collectives (group size, nodes spanned on ``cluster``). Prices the head-dim
    split of multi-head attention with a GELU MLP in prefill; other Plans get a one-line error."""
    if plan.partition.kv:
        raise HelixInputError("kv_shards", "the estimator does not price KV-shard plans yet", plan.partition.kv_shards)
    if plan.phase != "prefill":
        raise HelixInputError("phase", "the estimator prices prefill (and training) steps only", str(plan.phase))
    plan.model.require_standard_attention("the estimator")
    beta = plan.model.dtype_bytes
    sizes = {"x": math.prod((plan.model.batch, plan.model.seq_len, plan.model.hidden)) * beta}
    ops, forward, groups = [], [], set()
    params = 0
    for step in plan.programs[rank]:
        sizes[step.output] = math.prod(step.output_shape) * beta
        if isinstance(step, Op):
            params += sum(math.prod(s) for _, s in step.params)
            ops.append(OpCost(step.name, step.kind, step.inputs, step.output, step.flops, step.bytes, step.gemm,
                              default_saves(step.kind, step.inputs, step.output)))
        elif isinstance(step, CommPoint) and step.forward_kind is not None:
            groups.add(step.group)
            forward.append(CommCost(step.name, step.forward_kind, "forward", step.group, len(step.ranks),
                                    cluster.nodes_spanned(step.ranks), math.prod(step.full_shape) * beta))
    backward = []
    for c in plan.collectives_for_rank(rank, "backward"):
        groups.add(c.group)
        ops_ = WGRAD_OVERLAP.get(c.name)
        backward.append(CommCost(c.name, c.kind, "backward", c.group, len(c.ranks), cluster.nodes_spanned(c.ranks),
                                 c.bytes, overlap=Overlap("backward", ops_, 0.5) if ops_ else None))
    return Program(ops, forward, backward, sizes, params, beta, communicators=len(groups))


def fuse_attention(prog: Program, seq_len, flash_block: int = 128, causal: bool = False) -> Program:
    """The same program with scores → softmax → P·V as one flash-attention kernel.

    The kernel runs the scores and P·V matmul FLOPs (softmax work is inside its
    efficiency; half of them with ``causal``: it skips the tiles above the diagonal) and reads
    q, k, v and writes the output and the fp32 row log-sum-exp: no ``L×L`` tensor reaches memory
    or autograd. Its backward recomputes the scores. Whatever sat between the scores and P·V
    (a dropout of the probabilities) is inside the kernel.

    With partial scores (``scores_allreduce``: d split over the group), a flash kernel
    needs the *summed* scores of every tile before its softmax: we model one all-reduce
    per block of ``flash_block`` query rows (``ceil(L/flash_block)`` calls of the same
    total size), double-buffered, and one more such all-reduce in backward, where the
    kernel recomputes the scores. No standard kernel does this; it is the cheapest exact
    way we see to combine flash attention with a split head dimension.
    """
    scores, softmax, attn_v = prog.op("scores"), prog.op("softmax"), prog.op("attn_v")
    reads = tuple(dict.fromkeys(scores.inputs + attn_v.inputs[1:]))  # q, k, v (one fused QKV tensor in Megatron)
    o = attn_v.output
    lse = "lse"
    sizes = dict(prog.sizes)
    rows = prog.sizes[softmax.output] / prog.dtype_bytes / seq_len  # (batch · heads · queries) of the score tensor
    sizes[lse] = rows * LSE_BYTES
    moved = sum(sizes[t] for t in reads) + sizes[o] + sizes[lse]
    flops = (scores.flops + attn_v.flops) * (0.5 if causal else 1)
    fused = OpCost("flash_attention", "flash_attention", reads, o, flops, moved, None, reads + (o, lse),
                   selective=scores.selective, causal=causal)
    inside = {"softmax", "attn_v"} | {op.name for op in prog.ops if op.selective and op.kind != "matmul"}
    ops = []
    for op in prog.ops:
        if op.name == "scores":
            ops.append(fused)
        elif op.name not in inside:
            ops.append(op)
    chunks = np.ceil(np.asarray(seq_len, dtype=float) / flash_block)
    chunks = float(chunks) if chunks.ndim == 0 else chunks
    forward, backward, extra = [], [], prog.extra_buffer_bytes
    for c in prog.forward_comms:
        if c.name == Comm.SCORES_ALLREDUCE:
            c = replace(c, count=chunks)
            extra = extra + np.where(np.asarray(c.p) > 1, 2 * c.bytes / chunks, 0.0)  # a group of one reduces nothing
            backward.append(replace(c, name=f"{Comm.SCORES_ALLREDUCE}.flash_backward", phase="backward"))
        forward.append(c)
    for c in prog.backward_comms:
        backward.append(replace(c, count=chunks) if c.name == Comm.SCORES_ALLREDUCE.backward() else c)
    return replace(prog, ops=ops, forward_comms=forward, backward_comms=backward, sizes=sizes,
                   extra_buffer_bytes=extra, notes=prog.notes + ["flash attention (fused scores, softmax, P·V)"])
