"""The design-space explorer: ipywidgets over ``explore()``, a plain function tests can call.

``explore(...)`` builds the Plan, prices it (``helixlib.estimate.estimator``) and ranks every
strategy at the same settings (``helixlib.estimate.design_space``); it returns an
:class:`ExplorerResult`. :class:`Explorer` wires controls to it with
``interactive_output`` (text boxes update on Enter, ``continuous_update=False``) and
draws the rank map, memory per GPU against capacity, the time breakdown and the
ranking. Set a control's ``.value`` from Python and ``explorer.result`` is the new
result, so the widget logic is tested without a browser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import inspect
from dataclasses import dataclass, field

import numpy as np

from helixlib.core.errors import HelixInputError
from helixlib.core.numbers import divisors
from helixlib.core.palette import TERM_COLORS
from helixlib.core.presets import DEFAULT_CLUSTER, DEFAULT_MODEL
from helixlib.core.units import seconds, si
from helixlib.estimate.design_space import evaluate, grid, label
from helixlib.estimate.estimator import Estimate, estimate
from helixlib.estimate.hardware import hardware_names, load_cluster
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.plan import Plan, QkMode, build_plan
from helixlib.plan.model import load_model, preset_names
from helixlib.plan.partition import QK_MODES, Partition, valid_partitions

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
        return [["▶" if r["current"] else "", r["strategy"], seconds(r["time_dataflow"]), seconds(r["time_no_overlap"]),
                 seconds(r["time_perfect_overlap"]), f"{r['mfu']:.1%}", si(r["memory"], "B"),
                 "yes" if r["fits"] else "no", r["largest_micro_batch"] or "-"] for r in self.ranking]


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


def draw_rank_map(plan: Plan, fig=None):
    """The rank map of the plan (``helixlib.views.rankmap``) on its own small figure."""
    fig = _reuse(fig, (4.2, 3.2))
    ax = fig.axes[0] if fig.axes else fig.add_axes((0.16, 0.16, 0.8, 0.74))
    _clear(ax)
    from helixlib.views.rankmap import plot_rank_map

    plot_rank_map(plan, ax=ax, annotate=plan.world_size <= 16)
    return fig


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
    head = (f"<b>one layer: {seconds(t['time_dataflow'])} (dataflow), {seconds(t['time_no_overlap'])} without "
            f"overlap, {seconds(t['time_perfect_overlap'])} with perfect overlap</b><div>"
            f'<span style="color:{TERM_COLORS["compute"]}">&#9632;</span> compute '
            f'<span style="color:{TERM_COLORS["communication"]}">&#9632;</span> exposed communication</div>')
    return head + html_bars(rows, "s", seconds)


def _reuse(fig, size):
    """The same Figure across updates: building axes and laying them out is most of matplotlib's cost."""
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, dpi=FIG_DPI)
    return fig


def _clear(ax) -> None:
    for artist in [*ax.images, *ax.lines, *ax.patches, *ax.texts, *ax.collections]:
        artist.remove()
    if ax.get_legend():
        ax.get_legend().remove()


def png(fig) -> bytes:
    """The figure as PNG bytes (what a notebook shows)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    return buf.getvalue()


class Explorer:
    """The controls, their dependencies (G → the n that fit; batch → micro-batches; model →
    its L and B) and one ``explore`` per change."""

    def __init__(self, **values):
        import ipywidgets as W

        v = DEFAULTS | values
        cfg = load_model(v["model"])
        v["seq_len"] = v["seq_len"] or cfg.seq_len
        v["batch"] = v["batch"] or cfg.batch
        self.controls = {
            "model": W.Dropdown(options=preset_names(), value=v["model"], description="model"),
            "hardware": W.Dropdown(options=hardware_names("cluster"), value=v["hardware"], description="hardware"),
            "world_size": W.Dropdown(options=WORLD_SIZES, value=v["world_size"], description="GPUs"),
            "head_groups": W.Dropdown(description="n x m"),
            "qk_mode": W.Dropdown(options=QK_MODES, value=v["qk_mode"], description="qk mode"),
            "seq_len": W.IntText(value=v["seq_len"], description="sequence", continuous_update=False),
            "batch": W.IntText(value=v["batch"], description="batch", continuous_update=False),
            "micro_batch": W.Dropdown(description="micro-batch"),
            "flash": W.Checkbox(value=v["flash"], description="flash attention"),
            "recompute": W.Checkbox(value=v["recompute"], description="recompute"),
            "training": W.Checkbox(value=v["training"], description="training"),
        }
        self._suspend = False
        self._last: dict | None = None
        self._map_key = self._map_fig = self._map_png = None
        self.result: ExplorerResult | None = None
        self._refresh_options(head_groups=v["head_groups"], micro_batch=v["micro_batch"])
        c = self.controls
        c["model"].observe(self._model_changed, "value")  # registered before interactive_output: runs first
        for name in ("world_size", "batch"):
            c[name].observe(lambda _: self._refresh_options(), "value")
        self.output = W.interactive_output(self._render, c)
        self.widget = W.VBox([W.HBox([W.VBox(list(c.values())[i:i + 4]) for i in (0, 4, 8)]), self.output])

    def _model_changed(self, change) -> None:
        cfg = load_model(change["new"])
        with self._suspended():
            self.controls["seq_len"].value, self.controls["batch"].value = cfg.seq_len, cfg.batch
        self._refresh_options()

    @contextlib.contextmanager
    def _suspended(self):
        """Change controls without rendering each change (the flag is reset even on an error)."""
        self._suspend = True
        try:
            yield
        finally:
            self._suspend = False

    def _refresh_options(self, head_groups=None, micro_batch=None) -> None:
        """Offer the n with n·m = G the model admits, and the divisors of the batch; keep choices that stay valid."""
        c = self.controls
        with self._suspended():
            G, hg, mb = c["world_size"].value, c["head_groups"], c["micro_batch"]
            keep = head_groups or hg.value
            try:
                parts = valid_partitions(load_model(c["model"].value), G)
            except HelixInputError:
                parts = []
            hg.options = [(f"{p.head_groups} x {p.dim_segments}", p.head_groups) for p in parts]
            if parts:
                ns = [p.head_groups for p in parts]
                hg.value = keep if keep in ns else ns[len(ns) // 2]
            keep = micro_batch or mb.value
            ds = divisors(c["batch"].value) if c["batch"].value and c["batch"].value > 0 else [1]
            mb.options = ds
            mb.value = keep if keep in ds else 1

    def _render(self, **values) -> None:
        if self._suspend or values == self._last:
            return
        self.update(**values)

    def update(self, **values) -> ExplorerResult:
        """Compute and show for ``values`` (the controls' values by default): the rank map (a
        matplotlib figure, redrawn only when the partition changes) and, as HTML the browser
        draws, memory per GPU, the time breakdown and the ranking."""
        from IPython.display import HTML, Image, display

        from helixlib.views.tables import html_table

        values = values or {k: w.value for k, w in self.controls.items()}
        self._last = values
        self.result = r = explore(**values)
        if r.error:
            display(HTML(f"<b>cannot estimate:</b> {r.error}"))
            return r
        key = (r.plan.model.heads, r.plan.model.head_dim, r.plan.partition.head_groups, r.plan.partition.dim_segments)
        if key != self._map_key:
            self._map_key, self._map_fig = key, draw_rank_map(r.plan, self._map_fig)
            self._map_png = png(self._map_fig)
        display(Image(self._map_png))
        display(HTML(memory_html(r) + time_html(r) + html_table(r.ranking_rows(), RANKING_HEADER)))
        return r
