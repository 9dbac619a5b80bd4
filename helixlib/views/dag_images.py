"""DAG drawings as a notebook shows them: a PNG scaled to the cell (every node in view, readable
as a picture of the structure) with a link to the full SVG (zoom in to read every shape).

A full drawing of a 16-GPU layer is 4000–6000 px wide; shown as SVG in a cell it overflows, and
an untrusted notebook does not render SVG at all. A PNG shows in any notebook, trusted or not,
in JupyterLab and in the HTML edition (embedded), so the drawings are PNGs, rendered by
Graphviz's ``dot`` at a resolution that makes them ``max_width_px`` wide.
"""

from __future__ import annotations

import html
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from helixlib.core.files import write_text_atomic
from helixlib.dag.render import dot_program

#: the widest PNG written (px); the notebook shows it at most DISPLAY_WIDTH_PX wide
MAX_WIDTH_PX = 1400
DISPLAY_WIDTH_PX = 900
_VIEWBOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"')


@dataclass(frozen=True)
class DagImage:
    """One drawing on disk: its .dot source, the full SVG and the scaled PNG."""

    dot: Path
    svg: Path
    png: Path
    width_px: int  # the PNG's width
    full_width_px: int  # the SVG's width at 96 px per inch (what a browser shows at 100 %)


def _run_dot(args: list[str], dot_path: Path) -> None:
    r = subprocess.run([dot_program(), *args, str(dot_path)], capture_output=True)
    if r.returncode:
        raise RuntimeError(f"dot failed on {dot_path}: {r.stderr.decode(errors='replace').strip()}")


def render_dag_image(dot_path: str | Path, max_width_px: int = MAX_WIDTH_PX) -> DagImage:
    """Render ``dot_path`` to ``.svg`` (full size) and to ``.png`` at most ``max_width_px`` wide
    (Graphviz's dpi chosen from the SVG's width in points: one layout each, no resampling)."""
    dot_path = Path(dot_path)
    svg, png = dot_path.with_suffix(".svg"), dot_path.with_suffix(".png")
    _run_dot(["-Tsvg", "-o", str(svg)], dot_path)
    match = _VIEWBOX.search(svg.read_text())
    width_pt = float(match.group(1)) if match else 72.0 * max_width_px / 96
    dpi = min(96.0, 72.0 * max_width_px / width_pt)
    _run_dot([f"-Gdpi={dpi:.2f}", "-Tpng", "-o", str(png)], dot_path)
    return DagImage(dot_path, svg, png, round(width_pt * dpi / 72), round(width_pt * 96 / 72))


def write_dag_image(dot_source: str, path: str | Path, max_width_px: int = MAX_WIDTH_PX) -> DagImage:
    """Write ``dot_source`` to ``path`` (.dot, atomically) and render it (:func:`render_dag_image`)."""
    return render_dag_image(write_text_atomic(Path(path).with_suffix(".dot"), dot_source), max_width_px)


def link_html(img: DagImage) -> str:
    """A link to the full SVG (relative to the notebook's folder), with its size."""
    scale = img.width_px / img.full_width_px
    note = f"shown at {scale:.0%} of full size; " if scale < 1 else ""
    return (f'<a href="{html.escape(img.svg.as_posix())}" target="_blank">open the full drawing '
            f"({img.svg.name}, {img.full_width_px:,} px wide)</a> <small>({note}zoom in the SVG to read every "
            "shape)</small>")


def show_dag(img: DagImage, display_width_px: int = DISPLAY_WIDTH_PX) -> None:
    """Display ``img`` in a notebook: the PNG scaled to the cell, and the link to the full SVG."""
    from IPython.display import HTML, Image, display

    display(Image(filename=str(img.png), width=min(img.width_px, display_width_px)))
    display(HTML(link_html(img)))
