"""Plots for notebook 04 that replace tables: the speed-up of every partition against the ideal,
and a long text report folded behind its first line."""

from __future__ import annotations

import html

import numpy as np


def plot_speedups(rows: list[dict], world_size: int, ax=None):
    """Per partition and qk mode (``estimate_views.speedup_rows``): the speed-up over one GPU with
    communication (bar) and of compute alone (marker), against the ideal G (dashed)."""
    import matplotlib.pyplot as plt

    from helixlib.core.palette import TERM_COLORS

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [r["speedup"] for r in rows], color=TERM_COLORS["communication"], label="with communication (dataflow)")
    ax.scatter([r["speedup_compute"] for r in rows], y, color=TERM_COLORS["compute"], zorder=3,
               label="compute alone")
    for i, r in enumerate(rows):
        ax.text(r["speedup"], i, f" x{r['speedup']:.1f} ({r['efficiency']:.0%})", va="center", fontsize=7)
    ax.axvline(world_size, color="black", ls="--", lw=1, label=f"ideal: x{world_size}")
    ax.set_yticks(y, [f"{r['partition']} {r['qk_mode']}" for r in rows], fontsize=7)
    ax.set_xlim(0, world_size * 1.15)
    ax.invert_yaxis()
    ax.set_xlabel(f"speed-up of one block (whole batch) on {world_size} GPUs over one GPU")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def folded_text(text: str, summary: str) -> str:
    """Preformatted ``text`` behind a ``<details>`` whose visible line is ``summary``."""
    return (f"<details><summary>{html.escape(summary)}</summary><pre style='font-size:11px'>{html.escape(text)}"
            "</pre></details>")
