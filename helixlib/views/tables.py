"""Rows for the tables the CLI prints and the notebooks display, all from the Plan."""

from __future__ import annotations

import html

from helixlib.core.units import si
from helixlib.plan import Plan

ATTENTION_OPS = ("ln1", "q_proj", "k_proj", "v_proj", "scores", "softmax", "attn_v", "out_proj", "residual1")
MLP_OPS = ("ln2", "fc1", "gelu", "fc2", "residual2")

RANK_HEADER = ["rank", "g", "s", "heads", "dim slice", "Q shape", "matmul", "weights", "inventory (one block)"]
OP_HEADER = ["op", "kind", "inputs", "output", "FLOPs", "bytes"]
COLLECTIVE_HEADER = ["#", "phase", "collective", "kind", "ranks", "elements", "bytes"]


def rank_rows(plan: Plan) -> list[list]:
    """One row per rank: coordinates, heads, dim slice, Q shape, matmul FLOPs, weights, and the Plan's
    inventory of one block (every tensor it produces, each once: not a peak; see audit.headline)."""
    rows = []
    for sh, mem in zip(plan.shards, plan.memory()):
        rows.append([sh.rank, sh.head_group, sh.dim_segment, f"{sh.heads[0]}-{sh.heads[1] - 1}",
                     f"[{sh.dim_slice[0]}, {sh.dim_slice[1]})", str(list(plan.op(sh.rank, "q_proj").output_shape)),
                     si(plan.rank_flops(sh.rank, "matmul"), "FLOP"), si(mem.weights_bytes, "B"),
                     si(mem.total_bytes, "B")])
    return rows


def op_rows(plan: Plan, rank: int, names: tuple[str, ...] = ATTENTION_OPS + MLP_OPS) -> list[list]:
    """Operators of ``rank`` (those in ``names``, program order): shapes, FLOPs, bytes."""
    return [[o.name, o.kind, " ".join(str(list(s)) for s in o.input_shapes), str(list(o.output_shape)),
             si(o.flops, "FLOP"), si(o.bytes, "B")]
            for o in plan.rank_ops(rank) if o.name in names]


def collective_rows(plan: Plan, phase: str | None = None) -> list[list]:
    return [[c.index, c.phase, c.name, c.kind, ",".join(map(str, c.ranks)), f"{c.elements:,}", si(c.bytes, "B")]
            for c in plan.collectives if phase is None or c.phase == phase]


def html_table(rows: list[list], header: list[str]) -> str:
    """The same rows as an HTML table for notebooks (``IPython.display.HTML``)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


#: tables longer than this are folded behind a one-line summary (the reader opens them on demand)
MAX_UNFOLDED_ROWS = 8


def folded(content_html: str, summary: str) -> str:
    """``content_html`` behind a ``<details>`` whose one visible line is ``summary``."""
    return f"<details><summary>{html.escape(summary)}</summary>{content_html}</details>"


def table_or_folded(rows: list[list], header: list[str], summary: str) -> str:
    """An HTML table, folded behind ``summary`` when it has more than MAX_UNFOLDED_ROWS rows."""
    table = html_table(rows, header)
    return table if len(rows) <= MAX_UNFOLDED_ROWS else folded(table, f"{summary} ({len(rows)} rows: click to open)")


MODEL_HEADER = ["preset", "D", "H", "d", "F", "L", "B", "layers", "params", "dtype", "source"]


def model_rows(names: list[str] | None = None) -> list[list]:
    """The model presets under data/models: dimensions and parameter count."""
    from helixlib.plan.model import load_model, preset_names

    rows = []
    for name in names or preset_names():
        m = load_model(name)
        rows.append([m.name, m.hidden, m.heads, m.head_dim, m.mlp_hidden, m.seq_len, m.batch, m.layers,
                     si(m.params, ""), m.dtype, m.source])
    return rows


def plan_summary(plan: Plan) -> dict:
    """The plan in a few numbers: sizes per rank, collective counts, FLOPs."""
    m, p = plan.model, plan.partition
    return {
        "world_size": plan.world_size,
        "heads_per_group": m.heads // p.head_groups,
        "head_dim": m.head_dim,
        "dim_segment_width": m.head_dim // p.dim_segments,
        "mlp_columns_per_rank": m.mlp_hidden // plan.world_size,
        "forward_collectives": sum(c.phase == "forward" for c in plan.collectives),
        "backward_collectives": sum(c.phase == "backward" for c in plan.collectives),
        "matmul_flops_per_rank": plan.rank_flops(0, "matmul"),
        "matmul_flops_total": sum(plan.rank_flops(r, "matmul") for r in range(plan.world_size)),
    }
