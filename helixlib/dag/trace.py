"""The graph of what ran: a :class:`~helixlib.dag.graph.Dag` built from recorded traces, to be
compared with the graph the plan draws.

A :class:`~helixlib.runtime.trace.Trace` records, per rank, the operators and the collectives in
the order they ran (their ``start`` times), each collective with its kind, process group
and element count, but not the tensors. So the trace graph takes from the *run*: which
operators ran on which rank and in which order, which collectives ran, of which kind, on
which ranks, of what size, and where each sat between the operators. It takes from the
plan's operator table, looked up by name, only the vocabulary of the dataflow: which named
tensors a step reads and writes, and their shapes. Every input is wired to the latest
producer of that tensor *in executed order*, so an operator that ran before the collective
it needs, a collective on the wrong group, of the wrong kind or size, a missing or an
extra step all make a different graph. What equality cannot see is a wrong shape inside
an operator: the simulation's comparison with the dense block catches that.

A backward-only point (``copy_to_region``: identity in forward) leaves no forward record;
it is placed as the plan's table says, just before the first step that reads its tensor,
with the group and size of its recorded backward collective. The gradient syncs of shared
weights (KV shards' ``qkv_grad_allreduce``) move no activation and are in neither graph: the
run's record of every collective against the Plan checks them. A decode loop's trace holds
every step; the graph of step t is built from the events of step t, against step t's Plan.
"""

from __future__ import annotations

from dataclasses import replace

from helixlib.dag.graph import Dag, DagBuilder, build_dag, partition_words, tensor_shape
from helixlib.plan import CommPoint, Op, Plan
from helixlib.plan.checks import CheckResult
from helixlib.runtime.trace import CollectiveEvent, OpEvent, Trace


def executed(trace: Trace, phase: str = "forward", step: int = 0) -> list[OpEvent | CollectiveEvent]:
    """One rank's operators and collectives of ``phase`` (of decode step ``step``), interleaved in
    the order they started."""
    events = [e for e in trace.ops + trace.collectives if e.phase == phase and e.step == step]
    return sorted(events, key=lambda e: e.start)


def _kind(event: CollectiveEvent | None) -> tuple[str, int] | None:
    return None if event is None else (event.kind, event.elements)


def _add_rank(b: DagBuilder, plan: Plan, trace: Trace, backward: bool) -> None:
    r, problems = trace.rank, b.dag.problems
    table = {s.name: s for s in plan.programs[r]}
    syncs = {c.name for c in plan.grad_syncs[r]} if plan.grad_syncs else set()  # weights' gradients: not drawn
    bwd = {c.name.removesuffix(".backward"): c for c in trace.collectives
           if c.phase == "backward" and c.name not in syncs} if backward else {}
    pending = [s for s in plan.programs[r] if isinstance(s, CommPoint) and s.forward_kind is None and s.name in bwd]
    for ev in executed(trace, step=plan.step):
        step = table.get(ev.name)
        if step is None or isinstance(step, Op) != isinstance(ev, OpEvent):
            problems.append(f"rank {r}: ran {ev.name!r}, which is no {type(ev).__name__[:-5].lower()} of the plan")
            continue
        reads = step.inputs if isinstance(step, Op) else (step.input,)
        for point in [p for p in pending if p.input in reads]:
            pending.remove(point)
            got = bwd.pop(point.name)
            b.comm(0, replace(point, ranks=tuple(got.ranks)), None, _kind(got))
        if isinstance(step, Op):
            b.op(0, step)
        else:
            b.comm(0, replace(step, ranks=tuple(ev.ranks)), (ev.kind, ev.elements), _kind(bwd.pop(step.name, None)))
    problems += [f"rank {r}: backward {name}.backward matches no forward step" for name in bwd]


def dag_from_traces(plan: Plan, traces: list[Trace], backward: bool = True) -> Dag:
    """The block's graph as the ranks ran it (one Trace per rank, from the simulation or the
    distributed run). ``backward=True`` needs traces of a forward + backward step."""
    dag = Dag(f"{plan.model.name} block as run: {partition_words(plan)}", "block", 1, backward)
    b = DagBuilder(dag)
    b.source("x", {t.rank: tensor_shape(plan.programs[t.rank], "x") for t in traces})
    for trace in traces:
        _add_rank(b, plan, trace, backward)
    b.sink("out", [t.rank for t in traces], 0)
    return b.finish()


def check_drawn_equals_ran(plan: Plan, traces: list[Trace], backward: bool = True) -> CheckResult:
    """The plan's graph of one block equals the graph of the recorded run: same nodes (with
    ranks, shapes, collective kinds and sizes) and the same edges."""
    drawn = build_dag(plan, "block", 1, backward)
    ran = dag_from_traces(plan, traces, backward)
    diff = drawn.diff(ran, ("plan", "run"))
    size = f"{len(drawn.nodes)} nodes, {len(drawn.edges)} edges"
    return CheckResult("dag_drawn_equals_ran", drawn == ran,
                       f"plan graph == run graph ({size})" if drawn == ran else "; ".join(diff[:4]))
