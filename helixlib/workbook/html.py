"""The HTML edition of the workbook: every executed notebook converted with nbconvert into
``build/html/``, an index page in notebook order, and the files the notebooks link to (the full
DAG drawings) copied beside them. Images are embedded in the pages (nbconvert writes a
notebook's PNG outputs as ``data:`` URIs), so a reader needs a browser, not Jupyter.

Executed notebooks are also *signed* here (``nbformat.sign``): JupyterLab then trusts them, so
their rich outputs and saved widget state show as stored.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from helixlib.core.files import write_bytes_atomic, write_text_atomic

#: cells tagged so: an exercise's answer. JupyterLab shows it collapsed (``source_hidden``); the
#: HTML edition keeps only its output, itself folded behind "answer"
ANSWER_TAG = "answer"
EXERCISE_TAG = "exercise"
#: what the notebooks write beside themselves that pages link to (the full SVG drawings)
LINKED_SUFFIXES = (".svg", ".png", ".dot")


@dataclass(frozen=True)
class Page:
    notebook: Path  # the executed notebook
    html: Path  # its page
    title: str  # the notebook's first heading
    summary: str  # the first sentence after it


def sign_notebook(path: Path, data_dir: str | None = None) -> None:
    """Record ``path`` as trusted in Jupyter's signature database (``data_dir``: Jupyter's data
    folder, default the user's), as ``jupyter trust`` does."""
    import nbformat
    from jupyter_core.paths import jupyter_data_dir
    from nbformat.sign import NotebookNotary

    data_dir = data_dir or jupyter_data_dir()
    Path(data_dir).mkdir(parents=True, exist_ok=True)  # a fresh machine has none yet
    NotebookNotary(data_dir=data_dir).sign(nbformat.read(path, as_version=4))


#: TeX a summary line may carry, as plain text (the index page has no MathJax)
_TEX = {"$": "", "^\\top": "ᵀ", "\\top": "ᵀ", "\\cdot": "·", "\\times": "×", "\\sqrt": "√", "\\in": "∈",
        "\\{": "{", "\\}": "}", "\\,": " ", "`": "", "*": ""}


def title_and_summary(notebook: Path, limit: int = 240) -> tuple[str, str]:
    """The first ``# heading`` of the notebook and the first paragraph under it (plain text, cut
    at a sentence end within ``limit`` characters)."""
    cells = json.loads(notebook.read_text())["cells"]
    first = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
    lines = first.strip().splitlines()
    title = lines[0].lstrip("# ").strip() if lines else notebook.stem
    paragraph = []
    for ln in lines[1:]:
        if not ln.strip():
            if paragraph:
                break
            continue
        paragraph.append(ln.strip())
    text = " ".join(paragraph)
    for tex, plain in _TEX.items():
        text = text.replace(tex, plain)
    if len(text) > limit:
        cut = text.rfind(". ", 0, limit)
        text = text[:cut + 1] if cut > 0 else text[:limit].rsplit(" ", 1)[0] + " …"
    return title, text


def to_html(notebook: Path, out: Path) -> Path:
    """One notebook as a standalone HTML page (JupyterLab's look; answer cells without their code)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(notebook, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={ANSWER_TAG}), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    return write_text_atomic(out, body)


def index_html(pages: list[Page]) -> str:
    """The index: the notebooks in reading order, each with its title and first sentence."""
    items = "".join(f'<li><a href="{html.escape(p.html.name)}"><b>{html.escape(p.title)}</b></a>'
                    f"<br><span>{html.escape(p.summary)}</span></li>" for p in pages)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Helix workbook</title>"
            "<style>body{font:16px/1.5 sans-serif;max-width:52em;margin:2em auto;padding:0 1em}"
            "li{margin:0.8em 0}span{color:#444}</style></head><body>"
            "<h1>Helix workbook: two-level attention partitioning</h1>"
            "<p>The executed notebooks, in reading order. Every number is computed by <code>helixlib</code>; "
            "the drawings and plots are embedded in each page. Run <code>make lab</code> to open them live.</p>"
            f"<ol>{items}</ol></body></html>")


def write_html_edition(executed: list[Path], out_dir: Path) -> list[Page]:
    """Convert ``executed`` (in reading order) into ``out_dir``, copy the files they link to,
    write ``index.html``; returns the pages."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for nb in executed:
        title, summary = title_and_summary(nb)
        pages.append(Page(nb, to_html(nb, out_dir / f"{nb.stem}.html"), title, summary))
    for nb_dir in {nb.parent for nb in executed}:
        for f in nb_dir.rglob("*"):
            if f.is_file() and f.suffix in LINKED_SUFFIXES:
                write_bytes_atomic(out_dir / f.relative_to(nb_dir), f.read_bytes())
    write_text_atomic(out_dir / "index.html", index_html(pages))
    return pages
