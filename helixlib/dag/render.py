"""Graphviz drawings of a :class:`~helixlib.dag.graph.Dag` (or a view of it).

Layout: data flows left to right, one lane (row) per rank, lanes clustered by head group
(label: heads) and inside it by rank (label: GPU, (g, s), head-dim columns). Operator nodes
and each rank's edges take the rank's colour from :func:`helixlib.core.palette.rank_color` (hue
by head group, shade by dim segment, as in the rank map of notebook 01). Operators at the
same depth share a column, and :func:`dot_source` stacks the lanes in rank order.

* operator: name, GPU, ``input shapes -> output shape``, weight slices;
* collective: black box, with its forward kind, group, ranks and buffer, and its backward;
  a collective over one head group sits inside that head group's cluster;
* backward-only mapping (copy_to_region, Megatron's f): dashed white box;
* residual (skip) edge: dashed, labelled ``skip``; every edge is labelled with its shape.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from collections import defaultdict

import graphviz

from helixlib.core.palette import rank_color, text_color
from helixlib.dag.graph import Dag, Edge, Node
from helixlib.plan import Plan

COLLECTIVE_FILL = "#1b1b1b"
LANE_KINDS = ("op", "stage")  # nodes drawn in a rank's lane
KIND_WORDS = {"all_reduce": "all-reduce", "all_gather": "all-gather", "reduce_scatter": "reduce-scatter"}
INSTALL_HINT = "install Graphviz (apt-get install graphviz, or conda install -c conda-forge graphviz)"


def fmt_shape(shape) -> str:
    return "×".join(map(str, shape))


def fmt_ranks(ranks) -> str:
    """0-15 for a contiguous range, else 0,4,8,12."""
    ranks = list(ranks)
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(map(str, ranks))


def _small(text: str) -> str:
    return f'<font point-size="8">{text}</font>'


def _collective_words(kind_elems, group: str, ranks) -> str:
    if kind_elems is None:
        return "no collective"
    kind, elements = kind_elems
    return f"{KIND_WORDS.get(kind, kind)} over {group} [{fmt_ranks(ranks)}], {elements:,} el."


def node_label(n: Node) -> str:
    """The HTML-like Graphviz label of one node (name, rank or group, shapes)."""
    e = html.escape
    if n.kind == "op":
        ins = ", ".join(fmt_shape(s) for s in n.in_shapes.values())
        out = fmt_shape(next(iter(n.out_shapes.values())))
        weights = "  ".join(f"{e(p)} {fmt_shape(s)}" for p, s in n.params if len(s) == 2)
        lines = [f"<b>{e(n.name)}</b>  GPU {n.ranks[0]}", _small(f"{ins} → {out}")]
        return "<" + "<br/>".join(lines + ([_small(weights)] if weights else [])) + ">"
    if n.kind == "comm":
        shape = fmt_shape(next(iter(n.in_shapes.values()))) + " → " + fmt_shape(next(iter(n.out_shapes.values())))
        lines = [f"<b>{e(n.name)}</b>  ({e(n.op_kind)})",
                 "fwd: " + _collective_words(n.forward, n.group, n.ranks), _small(shape),
                 _small("bwd: " + _collective_words(n.backward, n.group, n.ranks))]
        return "<" + "<br/>".join(lines) + ">"
    if n.kind in ("input", "output"):
        shape = fmt_shape(next(iter((n.out_shapes or n.in_shapes).values())))
        role = "input" if n.kind == "input" else "output"
        return f"<<b>{e(n.name)}</b>  {role}<br/>{_small(f'{shape} on GPUs {fmt_ranks(n.ranks)}')}>"
    if n.kind == "stage":
        return f"<<b>GPU {n.ranks[0]}</b>: {e(n.name)}<br/>{_small(e(n.note))}>"
    return f"<<b>{e(n.name)}</b><br/>{_small(e(n.note))}>"


def _node_attrs(n: Node, plan: Plan) -> dict:
    p = plan.partition
    if n.kind in LANE_KINDS:
        fill = rank_color(n.ranks[0], p.head_groups, p.second)
        return {"shape": "box", "style": "rounded,filled", "fillcolor": fill, "fontcolor": text_color(fill),
                "group": f"r{n.ranks[0]}"}
    if n.kind == "comm" and n.forward is None:
        return {"shape": "box", "style": "dashed,filled", "fillcolor": "#ffffff", "fontcolor": "#444444"}
    if n.kind == "comm":
        return {"shape": "box", "style": "filled,bold", "fillcolor": COLLECTIVE_FILL, "fontcolor": "#ffffff",
                "color": "#ffb000", "penwidth": "2.5"}
    return {"shape": "box", "style": "filled", "fillcolor": "#e8e8e8", "fontcolor": "#000000", "penwidth": "1.5"}


def _edge_attrs(e: Edge, dag: Dag, plan: Plan) -> dict:
    """Rank colour and shape label; a residual is dashed; an edge inside one rank's lane
    (operator to operator) weighs more, to keep the lane straight."""
    p = plan.partition
    attrs = {"color": rank_color(e.rank, p.head_groups, p.second), "label": fmt_shape(e.shape),
             "penwidth": "1.6"}
    if e.residual:
        attrs.update(style="dashed", label=f"skip {fmt_shape(e.shape)}")
    elif dag.nodes[e.src].kind in LANE_KINDS and dag.nodes[e.dst].kind in LANE_KINDS:
        attrs["weight"] = "4"
    return attrs


def _home(n: Node, plan: Plan) -> tuple[int | None, int | None]:
    """(head group, rank) cluster of a node: ops in their rank, a collective over ranks of
    one head group in that group, everything else at the top level."""
    groups = {plan.partition.coords(r)[0] for r in n.ranks}
    if n.kind in LANE_KINDS:
        return groups.pop(), n.ranks[0]
    if n.kind == "comm" and len(groups) == 1:
        return groups.pop(), None
    return None, None


def _cluster_label(plan: Plan, g: int, rank: int | None) -> str:
    if rank is None:
        sh = next(s for s in plan.shards if s.head_group == g)
        return f"head group {g}: heads {sh.heads[0]}-{sh.heads[1] - 1}"
    sh = plan.shards[rank]
    if plan.partition.kv:
        return (f"GPU {rank}  (g={sh.head_group}, j={sh.kv_shard})  {sh.kv_length} KV positions, "
                f"combines heads {sh.out_heads[0]}-{sh.out_heads[1] - 1}")
    return (f"GPU {rank}  (g={sh.head_group}, s={sh.dim_segment})  "
            f"head-dim columns [{sh.dim_slice[0]}, {sh.dim_slice[1]})")


def _columns(dag: Dag) -> dict[int, list[str]]:
    """Operator (and stage) nodes by depth, the longest path from the input: every rank runs
    the same program, so one column holds the same step of every rank, in rank order."""
    depth: dict[str, int] = {}
    into = dag.in_edges()
    for nid in dag.topological_order() or []:
        depth[nid] = max((depth[e.src] + 1 for e in into[nid]), default=0)
    columns: dict[int, list[str]] = defaultdict(list)
    for n in sorted(dag.nodes.values(), key=lambda n: n.ranks):
        if n.kind in LANE_KINDS:
            columns[depth[n.id]].append(n.id)
    return columns


LEGEND = ("colour = GPU (hue: head group, shade: dim segment) · black box = collective · "
          "dashed box = backward-only mapping (f) · dashed edge = residual · edge labels = shapes")


def legend(plan: Plan) -> str:
    """:data:`LEGEND`, with "KV shard" for the shade of a KV-shard plan."""
    return LEGEND.replace("dim segment", "KV shard") if plan.partition.kv else LEGEND


def _lane_ys(dot_source: str) -> dict[int, float]:
    """Mean vertical position of each rank's lane in ``dot``'s layout (``-Tplain``)."""
    plain = subprocess.run([dot_program(), "-Tplain"], input=dot_source, capture_output=True, text=True,
                           check=True).stdout
    ys: dict[int, list[float]] = defaultdict(list)
    for line in plain.splitlines():
        f = line.split()
        m = re.fullmatch(r'"?l\d+/r(\d+)/[^"]*"?', f[1]) if f[0] == "node" else None
        if m:
            ys[int(m.group(1))].append(float(f[3]))
    return {r: sum(v) / len(v) for r, v in ys.items()}


def to_dot(dag: Dag, plan: Plan, name: str, lane_order: dict[int, list[int]] | None = None) -> str:
    """DOT source of ``dag`` (a full graph or a view), clustered by head group and rank;
    ``lane_order[g]`` is the order head group g's rank clusters are declared in."""
    g = graphviz.Digraph(name, graph_attr={
        "rankdir": "LR", "newrank": "true", "ordering": "out", "mclimit": "0.1", "fontname": "Helvetica",
        "labelloc": "t", "nodesep": "0.12", "ranksep": "0.35",
        "label": f"<<b>{html.escape(dag.title)}</b><br/>{_small(legend(plan))}>"},
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.03"},
        edge_attr={"fontname": "Helvetica", "fontsize": "7", "arrowsize": "0.6"})
    homes: dict[tuple, list[Node]] = defaultdict(list)
    for n in dag.nodes.values():
        homes[_home(n, plan)].append(n)
    for n in homes.pop((None, None), []):
        g.node(n.id, node_label(n), **_node_attrs(n, plan))
    for hg in sorted({k[0] for k in homes}):
        with g.subgraph(name=f"cluster_hg{hg}") as c:
            c.attr(label=_cluster_label(plan, hg, None), style="rounded", color="#888888", fontsize="11")
            lanes = sorted(k[1] for k in homes if k[0] == hg and k[1] is not None)
            for rank in (lane_order or {}).get(hg, lanes):
                with c.subgraph(name=f"cluster_r{rank}") as cr:
                    cr.attr(label=_cluster_label(plan, hg, rank), style="rounded,dotted", fontsize="9")
                    for n in homes[(hg, rank)]:
                        cr.node(n.id, node_label(n), **_node_attrs(n, plan))
            for n in homes.get((hg, None), []):
                c.node(n.id, node_label(n), **_node_attrs(n, plan))
    for ids in _columns(dag).values():
        g.body.append("{rank=same; " + " ".join(graphviz.quoting.quote(i) for i in ids) + "}\n")
    for e in dag.edges:
        g.edge(e.src, e.dst, **_edge_attrs(e, dag, plan))
    return g.source


def lanes_top_down(dot_source: str, plan: Plan) -> dict[int, list[int]]:
    """Each head group's ranks in the order ``dot`` stacks their lanes, top to bottom."""
    ys = _lane_ys(dot_source)
    out: dict[int, list[int]] = defaultdict(list)
    for r in sorted(ys, key=lambda r: -ys[r]):
        out[plan.partition.coords(r)[0]].append(r)
    return dict(out)


def dot_source(dag: Dag, plan: Plan, name: str) -> str:
    """:func:`to_dot` with the lanes of every head group stacked in rank order.

    Every rank runs the same program, so ``dot``'s crossing minimisation gains nothing by
    reordering lanes, yet where it puts them depends on how the graph is declared (and on
    the Graphviz version). So: lay out once, read the order ``dot`` chose (a permutation of
    the declaration order), declare the clusters in the inverse permutation and lay out
    again. Without ``dot`` the lanes are declared in rank order and left at that.
    """
    first = to_dot(dag, plan, name)
    if shutil.which("dot") is None:
        return first
    got = lanes_top_down(first, plan)
    order = {}
    for hg, ranks in got.items():
        declared = sorted(ranks)  # what to_dot declared; dot stacked declared[perm[i]] at place i
        perm = [declared.index(r) for r in ranks]
        order[hg] = [0] * len(ranks)
        for i, p in enumerate(perm):
            order[hg][p] = declared[i]
    return to_dot(dag, plan, name, order)


COMM_HEADER = ["communication point", "mapping", "group", "ranks", "forward", "backward", "buffer"]


def comm_rows(dag: Dag) -> list[list]:
    """One row per communication node of ``dag`` (program order, then group): what it does
    in forward and in backward."""
    def kind(k):
        return "no collective" if k is None else f"{KIND_WORDS.get(k[0], k[0])}, {k[1]:,} el."
    comms = [n for n in dag.nodes.values() if n.kind == "comm"]
    first = {}
    for n in comms:
        first.setdefault((n.layer, n.name), len(first))
    return [[n.name, n.op_kind, n.group, fmt_ranks(n.ranks), kind(n.forward), kind(n.backward),
             fmt_shape(max(list(n.in_shapes.values()) + list(n.out_shapes.values()), key=math.prod))]
            for n in sorted(comms, key=lambda n: (first[(n.layer, n.name)], n.ranks))]


class DotNotFound(RuntimeError):
    """Graphviz's ``dot`` program is not on PATH."""


def dot_program() -> str:
    path = shutil.which("dot")
    if path is None:
        raise DotNotFound(f"Graphviz's `dot` was not found on PATH: {INSTALL_HINT}")
    return path


def render_svg(dot_source: str) -> str:
    """SVG text of ``dot_source`` (for notebooks: ``IPython.display.SVG(render_svg(src))``)."""
    return subprocess.run([dot_program(), "-Tsvg"], input=dot_source, capture_output=True, text=True,
                          check=True).stdout
