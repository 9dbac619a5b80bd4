"""What the design-space explorer computes, as plain functions (no widgets): ``explore()`` builds
the Plan, prices it (``helixlib.estimate.estimator``) and ranks every strategy at the same settings
(``helixlib.estimate.design_space``); the HTML renderers draw its memory and time as bars the
browser draws. :mod:`helixlib.views.widgets` wires controls to it.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
from dataclasses import dataclass, field

import numpy as np

from helixlib.core.errors import HelixInputError
from helixlib.core.palette import TERM_COLORS
from helixlib.core.presets import DEFAULT_CLUSTER, DEFAULT_MODEL
from helixlib.core.units import si
from helixlib.estimate.design_space import evaluate, grid, label
from helixlib.estimate.estimator import Estimate, estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.plan import Plan, QkMode, build_plan
from helixlib.plan.model import load_model
from helixlib.plan.partition import Partition
from helixlib.views.formats import duration

WORLD_SIZES = (8, 16, 32, 64)
FIG_DPI = 72
RANKING_HEADER = ["", "strategy", "time/step (dataflow)", "no overlap", "perfect overlap", "MFU", "memory/GPU",
                  "fits", "largest b"]


@dataclass
class ExplorerResult:
    values: dict  # the control values it was computed for
    error: str | None = None
    plan: Plan | None = None
    estimate: Estimate | None = None
    memory: dict = field(default_factory=dict)  # term -> bytes per GPU, plus total, capacity
    breakdown: list = field(default_factory=list)  # (name, compute s, exposed communication s), per layer
    ranking: list = field(default_factory=list)  # dicts, best first

    def ranking_rows(self) -> list[list]:
        return [["▶" if r["current"] else "", r["strategy"], duration(r["time_dataflow"]),
                 duration(r["time_no_overlap"]), duration(r["time_perfect_overlap"]), f"{r['mfu']:.1%}",
                 si(r["memory"], "B"), "yes" if r["fits"] else "no", r["largest_micro_batch"] or "-"]
                for r in self.ranking]


def explore(model=DEFAULT_MODEL, hardware=DEFAULT_CLUSTER, world_size=16, head_groups=4, qk_mode=QkMode.REDUCE_SCORES,
            seq_len=None, batch=None, micro_batch=1, flash=False, recompute=False, training=False) -> ExplorerResult:
    """Estimate one helix configuration and rank every strategy at the same settings."""
    values = dict(model=model, hardware=hardware, world_size=world_size, head_groups=head_groups, qk_mode=qk_mode,
                  seq_len=seq_len, batch=batch, micro_batch=micro_batch, flash=flash, recompute=recompute,
                  training=training)
    try:
        cfg = load_model(model, seq_len=seq_len, batch=batch)
        if world_size % head_groups:
            raise HelixInputError("head_groups", f"must divide the number of GPUs ({world_size})", head_groups)
        plan = build_plan(cfg, Partition(head_groups, world_size // head_groups, qk_mode))
        cluster = load_cluster(hardware)
        est = estimate(plan, cluster, training, flash, recompute, micro_batch, search_micro_batch=False)
    except HelixInputError as err:
        return ExplorerResult(values, error=str(err))
    mem = {t: float(getattr(est.memory, t)) for t in MemoryBreakdown.TERMS}
    mem.update(total=float(est.memory.total), capacity=est.memory.capacity)
    breakdown = est.breakdown()
    ranking = _ranking(cfg, hardware, plan, est)
    current = [r for r in ranking if r["current"]]
    if current:  # the vectorized search (tests check it equals estimate's bisection)
        est = dataclasses.replace(est, largest_micro_batch=current[0]["largest_micro_batch"] or None)
    return ExplorerResult(values, None, plan, est, mem, breakdown, ranking)


DEFAULTS = {k: p.default for k, p in inspect.signature(explore).parameters.items()}


def _ranking(cfg, hardware, plan: Plan, est: Estimate) -> list[dict]:
    o = est.options
    table = grid(models=(cfg,), hardware=(hardware,), world_sizes=(plan.world_size,), micro_batches=(est.micro_batch,),
                 flash=(o.flash,), recompute=(o.recompute,), training=(o.training,))
    res = evaluate(table, models={cfg.name: cfg})
    part = plan.partition
    rows = []
    for i in np.nonzero(res["valid"])[0]:
        n, m, qk = int(table["head_groups"][i]), int(table["dim_segments"][i]), str(table["qk_mode"][i])
        current = (table["strategy"][i] == "helix" and (n, m) == (part.head_groups, part.dim_segments)
                   and (qk == part.qk_mode or m == 1))
        rows.append({"strategy": label(str(table["strategy"][i]), n, m, qk), "current": bool(current)}
                    | {f: float(res[f][i]) for f in ("time_dataflow", "time_no_overlap", "time_perfect_overlap", "mfu",
                                                      "memory")}
                    | {"fits": bool(res["fits"][i]), "largest_micro_batch": int(res["largest_micro_batch"][i])})
    return sorted(rows, key=lambda r: (not r["fits"], r["time_dataflow"]))


def html_bars(rows: list[tuple[str, list[tuple[float, str]]]], unit: str, fmt, limit: float | None = None,
              limit_label: str = "") -> str:
    """Horizontal stacked bars as HTML: ``rows`` of (label, [(value, colour), ...]); ``limit`` draws a
    dashed line (e.g. the device's capacity). Drawn by the browser: no rasterising in Python."""
    top = max([sum(v for v, _ in parts) for _, parts in rows] + [limit or 0]) or 1.0
    width = 360  # px for the largest bar
    out = ['<div style="font:11px sans-serif">']
    for name, parts in rows:
        segs = "".join(f'<div title="{html.escape(name)}: {fmt(v)}" style="display:inline-block;height:11px;'
                       f'width:{width * v / top:.1f}px;background:{c}"></div>' for v, c in parts if v > 0)
        mark = (f'<div style="position:absolute;left:{width * limit / top:.1f}px;top:0;height:13px;'
                f'border-left:2px dashed black"></div>' if limit else "")
        out.append(f'<div style="display:flex;align-items:center"><span style="width:150px;text-align:right;'
                   f'padding-right:6px">{html.escape(name)}</span><span style="position:relative;width:{width + 4}px;'
                   f'white-space:nowrap">{segs}{mark}</span><span style="padding-left:6px">'
                   f'{fmt(sum(v for v, _ in parts))}</span></div>')
    if limit:
        out.append(f'<div style="padding-left:156px">dashed line: {html.escape(limit_label)} {fmt(limit)} {unit}</div>')
    out.append("</div>")
    return "".join(out)


def memory_html(result: ExplorerResult) -> str:
    """Memory per GPU, term by term, against the device's capacity."""
    mem = result.memory
    key = " ".join(f'<span style="color:{TERM_COLORS[t]}">&#9632;</span> {t}' for t in MemoryBreakdown.TERMS)
    verdict = "fits" if mem["total"] <= mem["capacity"] else "does NOT fit"
    bars = html_bars([("memory per GPU", [(mem[t], TERM_COLORS[t]) for t in MemoryBreakdown.TERMS])], "",
                     lambda v: si(v, "B"), mem["capacity"], "capacity")
    return f"<b>memory per GPU: {si(mem['total'], 'B')}, {verdict}</b><div>{key}</div>{bars}"


def time_html(result: ExplorerResult) -> str:
    """Seconds per layer (whole batch): compute per op, exposed communication per collective."""
    rows = [(name, [(c, TERM_COLORS["compute"]), (e, TERM_COLORS["communication"])]) for name, c, e in result.breakdown]
    t = result.estimate.per_layer
    head = (f"<b>one layer: {duration(t['time_dataflow'])} (dataflow), {duration(t['time_no_overlap'])} without "
            f"overlap, {duration(t['time_perfect_overlap'])} with perfect overlap</b><div>"
            f'<span style="color:{TERM_COLORS["compute"]}">&#9632;</span> compute '
            f'<span style="color:{TERM_COLORS["communication"]}">&#9632;</span> exposed communication</div>')
    return head + html_bars(rows, "s", duration)
