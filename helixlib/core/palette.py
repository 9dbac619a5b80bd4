"""One colour per rank, shared by the rank maps (matplotlib) and the DAGs (Graphviz):
hue by head group, lightness by dim segment, so a head group reads as one family."""

from __future__ import annotations

import colorsys


def rank_color(rank: int, head_groups: int, dim_segments: int) -> str:
    """'#rrggbb' for ``rank`` of an n × m mesh."""
    g, s = divmod(rank, dim_segments)
    hue = (g / head_groups + 0.58) % 1.0
    light = 0.42 + 0.36 * (s / max(dim_segments - 1, 1)) if dim_segments > 1 else 0.55
    r, gr, b = colorsys.hls_to_rgb(hue, light, 0.62)
    return f"#{round(r * 255):02x}{round(gr * 255):02x}{round(b * 255):02x}"


def rank_colors(head_groups: int, dim_segments: int) -> list[str]:
    return [rank_color(r, head_groups, dim_segments) for r in range(head_groups * dim_segments)]


def text_color(hex_color: str) -> str:
    """Black or white, whichever reads better on ``hex_color``."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


#: colours of the estimate's terms: time (compute vs exposed communication) and memory
TERM_COLORS = {
    "compute": "#4c72b0",
    "communication": "#dd8452",
    "weights": "#4c72b0",
    "gradients": "#64b5cd",
    "optimizer": "#8172b3",
    "activations": "#c44e52",
    "working": "#dd8452",
    "comm_buffers": "#55a868",
    "reserved": "#8c8c8c",
}
