"""The design-space explorer: ipywidgets over ``explore()`` (:mod:`helixlib.views.explore`), a
plain function tests can call.

:class:`Explorer` wires controls to ``explore`` with ``interactive_output`` (text boxes update on
Enter, ``continuous_update=False``) and draws the rank map, memory per GPU against capacity, the
time breakdown and the ranking. Set a control's ``.value`` from Python and ``explorer.result`` is
the new result, so the widget logic is tested without a browser (and in one, by
``tests/test_browser.py``). For readers without a kernel, :meth:`Explorer.show_snapshot` shows the
same output as static images and HTML.
"""

from __future__ import annotations

import contextlib
import html

from helixlib.core.errors import HelixInputError
from helixlib.core.numbers import divisors
from helixlib.estimate.hardware import hardware_names
from helixlib.plan import Plan
from helixlib.plan.model import load_model, preset_names
from helixlib.plan.partition import QK_MODES, valid_partitions
from helixlib.views.explore import (  # noqa: F401 - the explorer's public names, re-exported
    DEFAULTS,
    RANKING_HEADER,
    WORLD_SIZES,
    ExplorerResult,
    explore,
    html_bars,
    memory_html,
    time_html,
)
from helixlib.views.formats import duration
from helixlib.views.tables import table_or_folded

FIG_DPI = 72


def draw_rank_map(plan: Plan, fig=None):
    """The rank map of the plan (``helixlib.views.rankmap``) on its own small figure."""
    fig = _reuse(fig, (4.2, 3.2))
    ax = fig.axes[0] if fig.axes else fig.add_axes((0.16, 0.16, 0.8, 0.74))
    _clear(ax)
    from helixlib.views.rankmap import plot_rank_map

    plot_rank_map(plan, ax=ax, annotate=plan.world_size <= 16)
    return fig


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
        draws, memory per GPU, the time breakdown and the ranking (folded when long)."""
        from IPython.display import display

        values = values or {k: w.value for k, w in self.controls.items()}
        self._last = values
        self.result = explore(**values)
        for obj in self._outputs():
            display(obj)
        return self.result

    def _outputs(self) -> list:
        """What the explorer shows for its current result: an error line, or the rank map (PNG)
        and the HTML panels."""
        from IPython.display import HTML, Image

        r = self.result
        if r.error:
            return [HTML(error_html(r.error))]
        key = (r.plan.model.heads, r.plan.model.head_dim, r.plan.partition.head_groups, r.plan.partition.dim_segments)
        if key != self._map_key:
            self._map_key, self._map_fig = key, draw_rank_map(r.plan, self._map_fig)
            self._map_png = png(self._map_fig)
        return [Image(self._map_png), HTML(memory_html(r) + time_html(r) + ranking_html(r))]

    def show_snapshot(self) -> None:
        """The explorer's current output as static outputs (a PNG and HTML), for readers of the
        stored notebook or the HTML edition, where no kernel drives the widgets."""
        from IPython.display import HTML, display

        v = self.result.values
        display(HTML(f"<b>Snapshot of the explorer</b> ({v['model']}, {v['hardware']}, {v['world_size']} GPUs, "
                     f"n = {v['head_groups']}, {v['qk_mode']}, micro-batch {v['micro_batch']}"
                     f"{', training' if v['training'] else ', forward'}): what it shows before any control moves."))
        for obj in self._outputs():
            display(obj)

    def _repr_mimebundle_(self, **kwargs):
        """The widget itself; without a widget manager (a stored notebook, the HTML edition) the
        plain-text fallback says what the cell is instead of ``VBox(children=...)``."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ("Explorer (interactive: needs a running kernel; the snapshot below shows "
                                "its starting point)")
        return bundle


def error_html(message: str) -> str:
    """The explorer's one-line error (the input error's own line: field, rule, value)."""
    return f'<div class="helix-explorer-error"><b>cannot estimate:</b> {html.escape(message)}</div>'


def ranking_html(result: ExplorerResult) -> str:
    """The fastest strategy in one line, then every strategy's row (folded when long)."""
    first = next((r for r in result.ranking if r["fits"]), None)
    lead = (f"<p><b>fastest that fits: {html.escape(first['strategy'])}</b>, {duration(first['time_dataflow'])} "
            "per step</p>" if first else "<p><b>no strategy fits in memory at these settings</b></p>")
    return lead + table_or_folded(result.ranking_rows(), RANKING_HEADER, f"every strategy, ranked "
                                                                          f"({len(result.ranking)})")
