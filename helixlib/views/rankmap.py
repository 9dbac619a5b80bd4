"""Who owns which (head, head-dim column): the picture of a two-level partition."""

from __future__ import annotations

import numpy as np

from helixlib.core.palette import rank_colors, text_color
from helixlib.plan import Plan
from helixlib.views.formats import plural


def owner_map(plan: Plan) -> np.ndarray:
    """[H, d] array: the rank that owns column c of head h (each cell exactly one rank)."""
    H, d = plan.model.heads, plan.model.head_dim
    owner = np.full((H, d), -1, dtype=np.int64)
    for s in plan.shards:
        owner[s.heads[0]:s.heads[1], s.dim_slice[0]:s.dim_slice[1]] = s.rank
    return owner


def plot_rank_map(plan: Plan, ax=None, annotate: bool = True):
    """Draw heads (rows) × head-dim columns coloured by owning rank; returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    n, m = plan.partition.head_groups, plan.partition.dim_segments
    colors = rank_colors(n, m)
    owner = owner_map(plan)
    H, d = owner.shape
    ax.imshow(owner, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(colors) - 0.5,
              aspect="auto", interpolation="nearest", extent=(0, d, H, 0))
    if annotate:
        for sh in plan.shards:
            (h0, h1), (c0, c1) = sh.heads, sh.dim_slice
            ax.text((c0 + c1) / 2, (h0 + h1) / 2, str(sh.rank), ha="center", va="center",
                    fontsize=8 if plan.world_size <= 16 else 6, color=text_color(colors[sh.rank]))
    for s in range(1, m):
        ax.axvline(s * d // m, color="white", lw=0.6)
    for g in range(1, n):
        ax.axhline(g * H // n, color="black", lw=1.5)
    ax.set_xlabel(f"head-dim column (d = {d}, d_s = {d // m})")
    ax.set_ylabel(f"head (h_g = {H // n} per group)")
    ax.set_title(f"{plural(n, 'head group')} x {plural(m, 'dim segment')}")
    return ax
