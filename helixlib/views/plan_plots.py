"""Pictures of one Plan for notebook 02: what each operator of a rank costs, how large each
collective is, and how far each simulated variant lands from the dense block."""

from __future__ import annotations

import numpy as np

from helixlib.core.palette import TERM_COLORS
from helixlib.core.units import si
from helixlib.plan import Plan


def plot_op_costs(plan: Plan, rank: int, names: tuple[str, ...], ax=None):
    """Per operator of ``rank`` (program order): FLOPs and bytes moved, log scale; the label
    carries the output shape."""
    import matplotlib.pyplot as plt

    ops = [o for o in plan.rank_ops(rank) if o.name in names]
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 0.32 * len(ops) + 1.0))
    y = np.arange(len(ops))
    ax.barh(y - 0.2, [max(o.flops, 1) for o in ops], 0.4, color=TERM_COLORS["compute"], label="FLOPs")
    ax.barh(y + 0.2, [o.bytes for o in ops], 0.4, color=TERM_COLORS["activations"], label="bytes moved")
    for i, o in enumerate(ops):
        ax.text(max(o.flops, o.bytes, 1) * 1.3, i, f"{si(o.flops, 'FLOP')}, {si(o.bytes, 'B')}", va="center",
                fontsize=7)
    ax.set_yticks(y, [f"{o.name} -> {list(o.output_shape)}" for o in ops], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(right=max(max(o.flops, o.bytes) for o in ops) * 60)
    ax.invert_yaxis()
    ax.set_xlabel(f"rank {rank}, one block, forward (log scale)")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_collective_sizes(plan: Plan, ax=None):
    """Bytes of each named collective one rank joins, forward and backward, in call order."""
    import matplotlib.pyplot as plt

    seen: dict[tuple, object] = {}
    for c in plan.collectives_for_rank(0, None):
        seen.setdefault((c.phase, c.name), c)
    calls = list(seen.values())
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.3 * len(calls) + 1.0))
    y = np.arange(len(calls))
    colors = [TERM_COLORS["communication"] if c.phase == "forward" else TERM_COLORS["comm_buffers"] for c in calls]
    ax.barh(y, [c.bytes for c in calls], color=colors)
    for i, c in enumerate(calls):
        ax.text(c.bytes * 1.3, i, f"{c.kind} over {len(c.ranks)} ranks, {si(c.bytes, 'B')}", va="center", fontsize=7)
    ax.set_yticks(y, [f"{c.phase[:3]} {c.name}" for c in calls], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(right=max(c.bytes for c in calls) * 200)
    ax.invert_yaxis()
    ax.set_xlabel("bytes of the full buffer, per call (log scale); orange forward, green backward")
    return ax


def plot_errors(rows: list[dict], tolerance: float, ax=None):
    """Forward and backward relative error of each simulated variant against the dense block
    (log scale), with the tolerance line. ``rows``: dicts with label, forward, backward, exact."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 0.26 * len(rows) + 1.2))
    y = np.arange(len(rows))
    floor = 1e-18  # an error of exactly 0 sits on the axis
    for key, marker in (("forward", "o"), ("backward", "s")):
        ax.scatter([max(r[key], floor) for r in rows], y, marker=marker, label=key,
                   c=["tab:blue" if r["exact"] else "tab:red" for r in rows], alpha=0.8 if key == "forward" else 0.45)
    ax.axvline(tolerance, color="black", ls="--", lw=1, label=f"tolerance {tolerance:g}")
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("relative error against the dense fp64 block (o forward, s backward; red: segment_local)")
    ax.legend(fontsize=7, loc="lower right")
    return ax
