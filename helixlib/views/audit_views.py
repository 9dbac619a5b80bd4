"""The audit and the deployment's headline figures as a reader wants them: values with their
units (not ``np.float64(...)``), the wrong claims first, both output variants side by side, and
the three memory figures drawn together so their difference is visible."""

from __future__ import annotations

import html
import math
from collections.abc import Callable

from helixlib.audit.claims import Verdict
from helixlib.audit.headline import Headlines
from helixlib.core.palette import TERM_COLORS
from helixlib.core.units import si
from helixlib.views.formats import duration, plural

_pct = lambda v: f"{100 * float(v):.3g} %"
_times = lambda v: f"×{float(v):.3g}"

#: how each check's value reads (its unit); anything else is shown plainly
UNITS: dict[str, Callable[[object], str]] = {
    "flops": lambda v: si(float(v), "FLOP"),
    "communication_share": _pct,
    "speedup": _times,
    "memory_reduction": _times,
    "memory_vs_capacity": lambda v: f"{float(v):.3g}× the device's memory",
    "corrected_runtime": lambda v: duration(float(v)),
    "group_size": lambda v: f"{int(v)} ranks",
    "comm_buffers": lambda v: si(float(v), "B"),
    "dataflow_error": lambda v: f"{float(v):.3g} (relative error)",
    "collectives_between": lambda v: plural(int(v), "collective"),
}


def plain(value) -> str:
    """A value without numpy's reprs: numbers to 3 digits, lists joined, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) or hasattr(value, "dtype"):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v)}" if abs(v) < 1e6 else f"{int(v):,}"  # shapes read as [1024, 10000]
        return f"{v:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    return str(value)


def with_unit(check: str, value) -> str:
    """``value`` of check ``check`` with its unit ("258 TFLOP", "142 %", "×4.83")."""
    fmt = UNITS.get(check)
    if fmt is None or isinstance(value, bool) or not isinstance(value, int | float) and not hasattr(value, "dtype"):
        return plain(value)
    return fmt(value)


def claimed_text(v: Verdict) -> str:
    c = v.claim
    prefix = {"at_most": "at most ", "at_least": "at least "}.get(c.compare, "")
    return prefix + with_unit(c.check, c.claimed)


def wrong_claims_html(verdicts: list[Verdict]) -> str:
    """The wrong claims, by section: what the plan says, what is computed (with units), how far
    off, and why."""
    out, section = [], None
    for v in verdicts:
        if v.verdict != "wrong":
            continue
        if v.claim.section != section:
            if section is not None:
                out.append("</ul>")
            section = v.claim.section
            out.append(f"<h4>{html.escape(section)}</h4><ul>")
        off = "" if v.ratio is None or v.ratio == 0 else f" (computed / claimed = {v.ratio:.3g})"
        out.append(f"<li><b>{html.escape(v.claim.id)}</b>: the plan says <i>{html.escape(claimed_text(v))}</i>; "
                   f"computed: <b>{html.escape(with_unit(v.claim.check, v.computed))}</b>{html.escape(off)}"
                   f"<br><small>“{html.escape(v.claim.quote)}” — {html.escape(v.explanation)}</small></li>")
    out.append("</ul>" if section is not None else "<p>No claim is wrong.</p>")
    return "".join(out)


VERDICT_HEADER = ["claim", "section", "verdict", "claimed", "computed", "computed / claimed"]


def verdict_rows(verdicts: list[Verdict], width: int = 48) -> list[list]:
    """Every verdict, values with units (long ones shortened)."""
    cut = lambda t: t if len(t) <= width else t[:width - 3] + "..."
    return [[v.claim.id, v.claim.section, v.verdict, cut(claimed_text(v)), cut(with_unit(v.claim.check, v.computed)),
             "" if v.ratio is None else f"{v.ratio:.3g}"] for v in verdicts]


def headline_html(h: Headlines) -> str:
    """Both output variants side by side; the one the audit reads the plan as is marked."""
    figures = [("forward, one layer, whole batch (dataflow)", lambda x: duration(x.forward_per_layer_s)),
               ("compute / communication per layer", lambda x: f"{duration(x.compute_per_layer_s)} / "
                                                                f"{duration(x.communication_per_layer_s)}"),
               ("communication / compute (plan: < 5 %)", lambda x: _pct(x.communication_over_compute)),
               ("speed-up over one GPU (plan: ×16)", lambda x: _times(x.speedup)),
               ("memory per GPU, forward peak", lambda x: si(x.per_gpu_peak_bytes, "B")),
               ("memory reduction over one GPU (plan: ×16)", lambda x: _times(x.memory_reduction))]
    cols = list(h.variants)
    head = "".join(f"<th>output = {html.escape(str(c))}{' (audited)' if c == h.audited else ''}</th>" for c in cols)
    body = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{html.escape(fmt(h[c]))}</td>" for c in cols)
                   + "</tr>" for name, fmt in figures)
    hw = h[cols[0]].hardware
    return (f"<table><thead><tr><th>{html.escape(hw)}</th>{head}</tr></thead><tbody>{body}</tbody></table>"
            "<small>allreduce: Megatron's row-parallel out-projection; concat: the plan's literal two-phase "
            "concatenation. Both from <code>helixlib.audit.headline.headline_figures</code>.</small>")


def plot_memory_figures(h: Headlines, output: str | None = None, ax=None):
    """The three memory figures of one variant as stacked bars (log-free, TB), the device's
    memory marked: the Plan's inventory of one block, the forward peak per GPU, the same on one GPU."""
    import matplotlib.pyplot as plt

    x = h[output or h.audited]
    if ax is None:
        _, ax = plt.subplots(figsize=(9.5, 2.6))
    inv_colors = {"weights": TERM_COLORS["weights"], "activations": TERM_COLORS["activations"],
                  "scores": "#937860", "buffers": TERM_COLORS["comm_buffers"]}
    bars = [("Plan inventory, one block\n(every tensor, nothing freed)", x.plan_inventory_terms, inv_colors),
            ("forward peak per GPU\n(estimator, all layers)", x.per_gpu_terms, TERM_COLORS),
            ("forward peak on one GPU\n(the whole block, 1 x 1)", {"total": x.one_gpu_peak_bytes}, {"total": "gray"})]
    seen = set()
    for i, (_, terms, colors) in enumerate(bars):
        left = 0.0
        for term, v in terms.items():
            if v <= 0:
                continue
            ax.barh(i, v / 1e12, left=left, color=colors[term], label=None if term in seen else term)
            seen.add(term)
            left += v / 1e12
        ax.text(left, i, f"  {si(left * 1e12, 'B')}", va="center", fontsize=8)
    ax.axvline(x.device_bytes / 1e12, color="black", ls="--", lw=1)
    ax.text(x.device_bytes / 1e12, -0.6, f" device {si(x.device_bytes, 'B')}", fontsize=7)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.2 * max(x.plan_inventory_bytes, x.one_gpu_peak_bytes) / 1e12)
    ax.set_xlabel(f"TB ({x.hardware}, output = {x.output})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def log_ratio(v: Verdict) -> float:
    """|log10(computed / claimed)|: how far off a numeric claim is (0 when it holds exactly)."""
    return abs(math.log10(v.ratio)) if v.ratio else 0.0
