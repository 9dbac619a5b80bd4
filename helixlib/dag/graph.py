"""Operator-level DAGs of the partitioned block, built from the Plan (never drawn by hand).

A :class:`Dag` has

* one ``op`` node per operator per rank (``l0/r5/q_proj``): its activation input shapes
  (one port per input tensor name: ``x``, ``a`` ...), its output shape, its rank;
* one ``comm`` node per communication point per process group (``l0/scores_allreduce/4-5-6-7``),
  joining the ranks of that group: one port ``r<rank>`` per member, in and out. It is a
  Megatron-style paired mapping: ``forward`` and ``backward`` are ``(collective kind,
  elements)`` or None (identity). The ``copy_to_region`` points (``qkv_input``,
  ``fc1_input``) are identity in forward and all-reduce the input gradient in backward;
  they are nodes too, so every collective of the Plan, forward and backward, is one node;
* an ``input`` node (the section input, e.g. ``x`` [B, L, D], replicated: a port per rank)
  and an ``output`` node (``out`` [B, L, D], a port per rank).

An edge carries one tensor of one rank, from a producer's output port to a consumer's
input port, with its shape. An edge into an ``add`` whose source also feeds another node
is a residual (skip) edge.

:func:`build_dag` builds one section ("mha": x -> x1, "mlp": x1 -> out, "block": x -> out)
for ``layers`` consecutive blocks (layer l's ``out`` is layer l+1's ``x`` on the same rank).
helix-70b × 87 layers × 16 ranks is ~20k nodes: cheap to build and check, useless to draw.
The drawings use *views*, contractions of the full graph (:mod:`helixlib.dag.views`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from helixlib.core.errors import HelixInputError, one_of
from helixlib.plan import CommPoint, Op, Plan

Shape = tuple[int, ...]

#: section -> (input tensor, output tensor) of every rank's program
SECTIONS = {"mha": ("x", "x1"), "mlp": ("x1", "out"), "block": ("x", "out")}


@dataclass
class Node:
    """One vertex. Shapes are per port: op ports are tensor names, the others ``r<rank>``."""

    id: str
    kind: str  # input | output | op | comm | stage | layers (the last two only in views)
    name: str
    layer: int
    ranks: tuple[int, ...]
    in_shapes: dict[str, Shape] = field(default_factory=dict)
    out_shapes: dict[str, Shape] = field(default_factory=dict)
    op_kind: str = ""  # op: matmul, layernorm, softmax, gelu, add; comm: the mapping
    group: str = ""  # comm: mesh dim of the process group (dim_segment, head_group, world)
    params: tuple[tuple[str, Shape], ...] = ()  # op: weights it reads
    forward: tuple[str, int] | None = None  # comm: (kind, elements) of the forward collective
    backward: tuple[str, int] | None = None  # comm: (kind, elements) of the backward collective
    stage: int = 0  # op: how many communication points precede it in its rank's program
    members: tuple[str, ...] = ()  # view nodes: the full graph's nodes this one stands for
    note: str = ""  # view nodes: what the members are, in words


@dataclass(frozen=True)
class Edge:
    """Tensor of rank ``rank``, shape ``shape``, from ``src``'s port to ``dst``'s port."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    shape: Shape
    rank: int
    residual: bool = False


class Dag:
    """Nodes by id and edges; ``section``/``layers``/``backward`` say what was built."""

    def __init__(self, title: str = "", section: str = "block", layers: int = 1, backward: bool = True):
        self.title, self.section, self.layers, self.backward = title, section, layers, backward
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.problems: list[str] = []  # what a builder could not wire (a trace out of order, ...)

    def __repr__(self) -> str:
        return f"<Dag {self.title!r}: {len(self.nodes)} nodes, {len(self.edges)} edges>"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Dag) and self.nodes == other.nodes
                and Counter(self.edges) == Counter(other.edges) and self.problems == other.problems)

    def count(self, kind: str) -> int:
        return sum(n.kind == kind for n in self.nodes.values())

    def in_edges(self) -> dict[str, list[Edge]]:
        out: dict[str, list[Edge]] = defaultdict(list)
        for e in self.edges:
            out[e.dst].append(e)
        return out

    def out_edges(self) -> dict[str, list[Edge]]:
        out: dict[str, list[Edge]] = defaultdict(list)
        for e in self.edges:
            out[e.src].append(e)
        return out

    def topological_order(self) -> list[str] | None:
        """Kahn's algorithm: the node ids in an order where every edge goes forward, or None
        if there is a cycle."""
        indeg = Counter(e.dst for e in self.edges)
        succ = self.out_edges()
        ready = deque(n for n in self.nodes if indeg[n] == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for e in succ[n]:
                indeg[e.dst] -= 1
                if indeg[e.dst] == 0:
                    ready.append(e.dst)
        return order if len(order) == len(self.nodes) else None

    def diff(self, other: Dag, names: tuple[str, str] = ("a", "b"), limit: int = 8) -> list[str]:
        """Human-readable differences between self (``names[0]``) and other, ``limit`` of each sort."""
        a_, b_ = names
        out = [f"only in {a_}: node {k}" for k in self.nodes if k not in other.nodes][:limit]
        out += [f"only in {b_}: node {k}" for k in other.nodes if k not in self.nodes][:limit]
        ea, eb = Counter(self.edges), Counter(other.edges)
        for who, extra in ((a_, ea - eb), (b_, eb - ea)):
            out += [f"only in {who}: edge {e.src} -> {e.dst} ({e.dst_port}, rank {e.rank})" for e in extra][:limit]
        for k in (k for k in self.nodes if k in other.nodes and self.nodes[k] != other.nodes[k]):
            a, b = self.nodes[k], other.nodes[k]
            out += [f"node {k}: {f.name} {getattr(a, f.name)} ({a_}) != {getattr(b, f.name)} ({b_})"
                    for f in fields(Node) if getattr(a, f.name) != getattr(b, f.name)][:limit]
        out += [f"{a_}: {p}" for p in self.problems[:limit]] + [f"{b_}: {p}" for p in other.problems[:limit]]
        return out


def comm_id(layer: int, name: str, ranks: Iterable[int]) -> str:
    return f"l{layer}/{name}/{'-'.join(map(str, ranks))}"


def op_id(layer: int, rank: int, name: str) -> str:
    return f"l{layer}/r{rank}/{name}"


class DagBuilder:
    """Adds rank programs to a Dag step by step, wiring every input to the latest producer
    of that tensor on the same rank. Shared by the plan's graph and the trace's graph."""

    def __init__(self, dag: Dag):
        self.dag = dag
        self.producer: dict[int, dict[str, tuple[str, str, Shape]]] = defaultdict(dict)  # rank -> tensor -> src
        self.stage: dict[int, int] = defaultdict(int)

    def _wire(self, rank: int, tensor: str, dst: str, dst_port: str) -> None:
        src = self.producer[rank].get(tensor)
        if src is None:
            self.dag.problems.append(f"rank {rank}: {dst} reads {tensor!r} before anything produced it")
            return
        self.dag.edges.append(Edge(src[0], src[1], dst, dst_port, src[2], rank))

    def source(self, tensor: str, shapes: dict[int, Shape], node_id: str = "input") -> None:
        """The section input: one port per rank, each producing ``tensor``."""
        node = Node(node_id, "input", tensor, 0, tuple(sorted(shapes)))
        for r, s in shapes.items():
            node.out_shapes[f"r{r}"] = s
            self.producer[r][tensor] = (node_id, f"r{r}", s)
        self.dag.nodes[node_id] = node

    def sink(self, tensor: str, ranks: Iterable[int], layer: int, node_id: str = "output") -> None:
        """The section output: one port per rank, consuming ``tensor``."""
        node = self.dag.nodes[node_id] = Node(node_id, "output", tensor, layer, tuple(ranks))
        for r in node.ranks:
            src = self.producer[r].get(tensor)
            if src is not None:
                node.in_shapes[f"r{r}"] = src[2]
            self._wire(r, tensor, node_id, f"r{r}")

    def carry(self, rank: int, tensor: str, as_tensor: str) -> None:
        """Start the next layer on ``rank``: only ``tensor`` survives, renamed ``as_tensor``."""
        self.producer[rank] = {as_tensor: self.producer[rank][tensor]}

    def op(self, layer: int, op: Op) -> None:
        nid = op_id(layer, op.rank, op.name)
        acts = dict(zip(op.inputs, op.input_shapes[: len(op.inputs)]))
        self.dag.nodes[nid] = Node(nid, "op", op.name, layer, (op.rank,), acts, {op.output: op.output_shape},
                                   op.kind, params=op.params, stage=self.stage[op.rank])
        for t in op.inputs:
            self._wire(op.rank, t, nid, t)
        self.producer[op.rank][op.output] = (nid, op.output, op.output_shape)

    def comm(self, layer: int, cp: CommPoint, forward: tuple[str, int] | None,
             backward: tuple[str, int] | None) -> None:
        """Rank ``cp.rank``'s side of a communication point; the node is shared by its group."""
        nid = comm_id(layer, cp.name, cp.ranks)
        node = self.dag.nodes.setdefault(nid, Node(nid, "comm", cp.name, layer, tuple(cp.ranks), op_kind=cp.mapping,
                                                   group=cp.group, forward=forward, backward=backward))
        if (node.forward, node.backward) != (forward, backward):
            self.dag.problems.append(f"rank {cp.rank}: {cp.name} is {forward}/{backward}, "
                                     f"its peers' {node.forward}/{node.backward}")
        port = f"r{cp.rank}"
        node.in_shapes[port], node.out_shapes[port] = cp.input_shape, cp.output_shape
        self._wire(cp.rank, cp.input, nid, port)
        self.producer[cp.rank][cp.output] = (nid, port, cp.output_shape)
        self.stage[cp.rank] += 1

    def finish(self) -> Dag:
        """Mark residual edges: into an ``add`` from a source that also feeds another node."""
        fanout = Counter((e.src, e.src_port) for e in self.dag.edges)
        nodes = self.dag.nodes
        self.dag.edges = [replace(e, residual=nodes[e.dst].op_kind == "add" and nodes[e.dst].kind == "op"
                                  and fanout[(e.src, e.src_port)] > 1) for e in self.dag.edges]
        return self.dag


def collective_elements(cp: CommPoint, kind: str | None) -> tuple[str, int] | None:
    """(kind, elements of the full buffer) as the Plan counts them, or None for identity."""
    if kind is None:
        return None
    return kind, math.prod(cp.full_shape)


def section_steps(program: list[Op | CommPoint], section: str) -> list[Op | CommPoint]:
    """The steps of one rank's program from the section's input tensor to its output tensor."""
    first, last = SECTIONS[section]
    produced = [s.output for s in program]
    start = produced.index(first) + 1 if first in produced else 0
    return program[start: produced.index(last) + 1]


def tensor_shape(program: list[Op | CommPoint], tensor: str) -> Shape:
    """Shape of ``tensor`` in a rank's program (from its producer, or its first consumer)."""
    for s in program:
        if s.output == tensor:
            return s.output_shape
        ins = s.inputs if isinstance(s, Op) else (s.input,)
        shapes = s.input_shapes if isinstance(s, Op) else (s.input_shape,)
        if tensor in ins:
            return shapes[ins.index(tensor)]
    raise KeyError(tensor)


def partition_words(plan: Plan) -> str:
    """The partition in a few words for titles (and the phase when it is decode)."""
    p = plan.partition
    if p.kv:
        words = (f"n={p.head_groups} x p={p.kv_shards} KV shards, {p.kv_placement} blocks of {p.tokens_per_block}"
                 + (f", HOP-B x{p.hop_b}" if p.hop_b > 1 else ""))
    else:
        words = f"n={p.head_groups} x m={p.dim_segments}, {p.qk_mode}, output={p.output}"
    return words + (f", decode step {plan.step} (context {plan.context})" if plan.phase == "decode" else "")


def _plan_title(plan: Plan, what: str) -> str:
    return f"{plan.model.name} {what}: {partition_words(plan)}"


def build_dag(plan: Plan, section: str = "block", layers: int = 1, backward: bool = True) -> Dag:
    """The operator-level graph of ``section`` over ``layers`` blocks, every rank.

    ``backward=False`` leaves out what only the backward pass does (the backward kinds of
    the mappings and the copy_to_region points): the forward dataflow alone.
    """
    one_of("section", section, tuple(SECTIONS))
    if layers != 1 and section != "block":
        raise HelixInputError("layers", "must be 1 unless section is block", layers)
    first, last = SECTIONS[section]
    what = f"{section}, {layers} layer{'s' * (layers > 1)}"
    dag = Dag(_plan_title(plan, what), section, layers, backward)
    b = DagBuilder(dag)
    G = plan.world_size
    b.source(first, {r: tensor_shape(plan.programs[r], first) for r in range(G)})
    for layer in range(layers):
        for r in range(G):
            if layer:
                b.carry(r, last, first)
            for step in section_steps(plan.programs[r], section):
                if isinstance(step, Op):
                    b.op(layer, step)
                elif step.forward_kind is not None or backward:
                    b.comm(layer, step, collective_elements(step, step.forward_kind),
                           collective_elements(step, step.backward_kind) if backward else None)
    b.sink(last, range(G), layers - 1)
    return b.finish()
