"""The deployment plan's "DAG completeness" checklist, computed on a :class:`~helixlib.dag.graph.Dag`.

Each check returns a :class:`~helixlib.plan.checks.CheckResult`; ``run_dag_checks(dag, plan)``
runs them all. They read the graph only (the plan is used for what it *should* contain:
its collectives and its residual adds), so a hand-broken graph fails them.
"""

from __future__ import annotations

from collections import Counter, deque

from helixlib.dag.graph import Dag, Node, section_steps
from helixlib.plan import MeshDim, Op, Plan
from helixlib.plan.checks import CheckResult

MESH_GROUPS = tuple(MeshDim)  # dim_segment, head_group, kv_shard, kv_share, world


def _issues(name: str, problems: list[str], ok_detail: str) -> CheckResult:
    return CheckResult(name, not problems, ok_detail + ("; " + "; ".join(problems[:3]) if problems else ""))


def check_acyclic(dag: Dag) -> CheckResult:
    """A topological order exists (Kahn's algorithm visits every node)."""
    order = dag.topological_order()
    return CheckResult("dag_acyclic", order is not None,
                       f"{len(dag.nodes)} nodes, {len(dag.edges)} edges, "
                       + ("topological order found" if order is not None else "cycle found"))


def _shape_ok(s) -> bool:
    return isinstance(s, tuple) and len(s) > 0 and all(isinstance(x, int) and x > 0 for x in s)


def _node_problems(n: Node) -> list[str]:
    rank_ports = {f"r{r}" for r in n.ranks}
    if not n.ranks:
        return [f"{n.id}: no rank"]
    shapes = list(n.in_shapes.values()) + list(n.out_shapes.values())
    if not all(_shape_ok(s) for s in shapes):
        return [f"{n.id}: bad shape in {shapes}"]
    if n.kind == "op":
        ok = len(n.ranks) == 1 and n.in_shapes and len(n.out_shapes) == 1
        return [] if ok else [f"{n.id}: an operator needs one rank, input shapes and one output shape"]
    if n.kind == "comm":
        ok = n.group in MESH_GROUPS and len(n.ranks) > 1 and set(n.in_shapes) == set(n.out_shapes) == rank_ports
        return [] if ok else [f"{n.id}: a collective needs a mesh group of >1 ranks and shapes on every member"]
    ports = n.out_shapes if n.kind == "input" else n.in_shapes
    return [] if set(ports) == rank_ports else [f"{n.id}: shapes for ranks {sorted(ports)}, not {sorted(rank_ports)}"]


def check_nodes_labelled(dag: Dag) -> CheckResult:
    """Every node has a rank (an operator) or a group (a collective), and shapes on all its ports."""
    problems = [p for n in dag.nodes.values() for p in _node_problems(n)]
    return _issues("dag_nodes_have_shapes_and_ranks", problems,
                   f"{dag.count('op')} operators on one rank each, {dag.count('comm')} communication nodes on "
                   "mesh groups")


def check_edge_shapes(dag: Dag) -> CheckResult:
    """Every edge's shape is its producer's output shape and its consumer's input shape, and
    every input of every node is fed by exactly one edge."""
    problems = []
    fed = Counter((e.dst, e.dst_port) for e in dag.edges)
    for e in dag.edges:
        src, dst = dag.nodes.get(e.src), dag.nodes.get(e.dst)
        made = src.out_shapes.get(e.src_port) if src else None
        want = dst.in_shapes.get(e.dst_port) if dst else None
        if not (made == e.shape == want):
            problems.append(f"{e.src} -> {e.dst} ({e.dst_port}): produced {made}, carried {e.shape}, expected {want}")
    for n in dag.nodes.values():
        problems += [f"{n.id} input {p} fed {fed[(n.id, p)]} times" for p in n.in_shapes if fed[(n.id, p)] != 1]
    problems += [f"{p}" for p in dag.problems]
    return _issues("dag_edge_shapes_match", problems,
                   f"{len(dag.edges)} edges: producer shape == consumer input shape, every input fed once")


def _expected_collectives(dag: Dag, plan: Plan) -> Counter:
    points = {s.name for s in section_steps(plan.programs[0], dag.section) if not isinstance(s, Op)}
    phases = ("forward", "backward") if dag.backward else ("forward",)
    return Counter(c.signature() for c in plan.collectives
                   if c.phase in phases and c.name.removesuffix(".backward") in points)


def check_collectives_match_plan(dag: Dag, plan: Plan) -> CheckResult:
    """Every collective of the Plan (forward, and backward if built) is one node of every
    layer, and the graph has no other: same name, kind, group ranks and elements."""
    want = _expected_collectives(dag, plan)
    problems = []
    by_layer = {layer: Counter() for layer in range(dag.layers)}  # one pass over the nodes: linear in layers
    for n in dag.nodes.values():
        if n.kind == "comm" and n.layer in by_layer:
            for phase, name, kind_elems in (("forward", n.name, n.forward),
                                            ("backward", f"{n.name}.backward", n.backward)):
                if kind_elems is not None:
                    by_layer[n.layer][(phase, name, kind_elems[0], n.ranks, kind_elems[1])] += 1
    for layer, got in by_layer.items():
        problems += [f"layer {layer}: missing {sig[:4]}" for sig in want - got]
        problems += [f"layer {layer}: extra {sig[:4]}" for sig in got - want]
    return _issues("dag_collectives_match_plan", problems,
                   f"{sum(want.values())} plan collectives x {dag.layers} layer(s), each exactly once")


def _reaches(dag: Dag, succ: dict, start: str, goal: str, layer: int) -> bool:
    """Is ``goal`` reachable from ``start`` (``succ``: out-edges by node) through nodes of ``layer``?"""
    seen, todo = {start}, deque([start])
    while todo:
        for e in succ[todo.popleft()]:
            if e.dst == goal:
                return True
            if e.dst not in seen and dag.nodes[e.dst].layer == layer:
                seen.add(e.dst)
                todo.append(e.dst)
    return False


def check_residuals(dag: Dag, plan: Plan) -> CheckResult:
    """Every residual add of the Plan is in the graph with exactly one skip edge, whose source
    also reaches the add's other input (it skips the branch)."""
    want = sum(isinstance(s, Op) and s.kind == "add" for r in range(plan.world_size)
               for s in section_steps(plan.programs[r], dag.section)) * dag.layers
    into, succ = dag.in_edges(), dag.out_edges()
    adds = [n for n in dag.nodes.values() if n.kind == "op" and n.op_kind == "add"]
    problems = [] if len(adds) == want else [f"{len(adds)} adds, the plan has {want}"]
    for n in adds:
        skip = [e for e in into[n.id] if e.residual]
        branch = [e for e in into[n.id] if not e.residual]
        if len(skip) != 1 or len(branch) != 1 or not _reaches(dag, succ, skip[0].src, branch[0].src, n.layer):
            problems.append(f"{n.id}: {len(skip)} skip and {len(branch)} branch inputs")
    return _issues("dag_residuals_present", problems, f"{len(adds)} residual adds, each with one skip edge")


def _walk(start: str, adjacent: dict, rank: int, downstream: bool) -> set[str]:
    """Nodes reached from ``start`` along rank ``rank``'s edges (``adjacent``: out-edges by
    node if ``downstream``, else in-edges, walked backwards)."""
    seen, todo = {start}, deque([start])
    while todo:
        for e in adjacent[todo.popleft()]:
            nxt = e.dst if downstream else e.src
            if e.rank == rank and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def check_rank_paths(dag: Dag) -> CheckResult:
    """For every rank: following that rank's edges, every node of the rank lies on a path
    from the input to the output."""
    inputs = [n.id for n in dag.nodes.values() if n.kind == "input"]
    outputs = [n.id for n in dag.nodes.values() if n.kind == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        return CheckResult("dag_input_to_output_on_every_rank", False,
                           f"{len(inputs)} input and {len(outputs)} output nodes, need one each")
    succ, pred = dag.out_edges(), dag.in_edges()
    ranks = sorted({r for n in dag.nodes.values() for r in n.ranks})
    problems = []
    for r in ranks:
        forward, backward = _walk(inputs[0], succ, r, True), _walk(outputs[0], pred, r, False)
        mine = {n.id for n in dag.nodes.values() if r in n.ranks}
        off = sorted(mine - (forward & backward))
        if off:
            problems.append(f"rank {r}: {len(off)} nodes off the input->output path, e.g. {off[0]}")
    return _issues("dag_input_to_output_on_every_rank", problems,
                   f"{len(ranks)} ranks, each a connected path from input to output")


def run_dag_checks(dag: Dag, plan: Plan) -> list[CheckResult]:
    """All checks, in a fixed order."""
    return [check_acyclic(dag), check_nodes_labelled(dag), check_edge_shapes(dag),
            check_collectives_match_plan(dag, plan), check_residuals(dag, plan), check_rank_paths(dag)]
