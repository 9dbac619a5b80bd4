"""Views of a :class:`~helixlib.dag.graph.Dag` for drawing: contractions of the full graph.

A view node stands for a set of full-graph nodes (``members``) and a view edge is a
full-graph edge between two sets (parallel ones merged), so a view cannot show what the
graph does not have; a contraction of a DAG by runs of one rank's operators between two
communication points stays acyclic (tests/test_dag.py checks both).

* :func:`stage_view`: every rank's run of operators between two communication points is
  one node, except one rank kept operator by operator (compact drawings of many ranks);
* :func:`model_view`: layer 0 as a stage view, all later layers as one node (the complete
  model: every layer runs the same program).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

from helixlib.dag.graph import Dag, Node


def contract(dag: Dag, key: Callable[[Node], str | None], make: Callable[[str, list[Node]], Node],
             title: str) -> Dag:
    """The quotient graph: nodes with the same ``key`` become one node ``make(key, members)``
    (None: the node stays as it is); edges inside a set vanish, parallel edges merge."""
    groups: dict[str, list[Node]] = defaultdict(list)
    where: dict[str, str] = {}
    view = Dag(title, dag.section, dag.layers, dag.backward)
    for node in dag.nodes.values():
        k = key(node)
        if k is None:
            view.nodes[node.id] = node
            where[node.id] = node.id
        else:
            groups[k].append(node)
            where[node.id] = k
    for k, members in groups.items():
        view.nodes[k] = make(k, members)
    seen = set()
    for e in dag.edges:
        src, dst = where[e.src], where[e.dst]
        if src == dst:
            continue
        e2 = replace(e, src=src, dst=dst, src_port=e.src_port if src == e.src else "",
                     dst_port=e.dst_port if dst == e.dst else "")
        if e2 not in seen:
            seen.add(e2)
            view.edges.append(e2)
    return view


def _stage_node(key: str, members: list[Node]) -> Node:
    """One rank's run of operators between two communication points."""
    first = members[0]
    return Node(key, "stage", " · ".join(m.name for m in members), first.layer, first.ranks,
                members=tuple(m.id for m in members),
                note=f"{len(members)} operator{'s' * (len(members) > 1)} (shapes on the edges)")


def _stage_key(expand_rank: int | None, layer: int | None = None) -> Callable[[Node], str | None]:
    def key(n: Node) -> str | None:
        if n.kind != "op" or n.ranks[0] == expand_rank or (layer is not None and n.layer != layer):
            return None
        return f"l{n.layer}/r{n.ranks[0]}/stage{n.stage}"
    return key


def stage_view(dag: Dag, expand_rank: int | None = None) -> Dag:
    """Compact view: every rank's operators between two communication points become one
    node, except rank ``expand_rank`` (drawn operator by operator)."""
    keep = "" if expand_rank is None else f", rank {expand_rank} expanded"
    return contract(dag, _stage_key(expand_rank), _stage_node, f"{dag.title} (compact{keep})")


def model_view(dag: Dag, expand_rank: int | None = None) -> Dag:
    """Complete-model view: layer 0 as a :func:`stage_view`, layers 1.. as one node.

    Every layer has the same program, so drawing one of them says it all; the later layers
    are one ``layers`` node whose note counts what it stands for.
    """
    stage = _stage_key(expand_rank, layer=0)
    L = dag.layers

    def key(n: Node) -> str | None:
        if n.layer >= 1 and n.kind in ("op", "comm"):
            return "layers"
        return stage(n)

    def make(k: str, members: list[Node]) -> Node:
        if k != "layers":
            return _stage_node(k, members)
        ops = sum(m.kind == "op" for m in members)
        fwd = sum(m.kind == "comm" and m.forward is not None for m in members)
        ranks = tuple(sorted({r for m in members for r in m.ranks}))
        span = "layer 1" if L == 2 else f"layers 1-{L - 1}"
        return Node(k, "layers", span, 1, ranks, members=tuple(m.id for m in members),
                    note=f"{L - 1} x layer 0: {ops} operators, {fwd} forward collectives in all")

    return contract(dag, key, make, f"{dag.title} (layer 0 drawn, later layers summarised)")
