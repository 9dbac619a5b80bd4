"""``python -m helixlib.workbook``: bad input is one line, executed notebooks are signed, and the
HTML edition has an index in notebook order with every image embedded; ``make lab`` and ``make
test`` set up what they need."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helixlib.workbook.html import (
    ANSWER_TAG,
    Page,
    index_html,
    sign_notebook,
    title_and_summary,
    to_html,
    write_html_edition,
)
from helixlib.workbook.notebooks import notebook_paths

ROOT = Path(__file__).resolve().parents[1]
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _executed(tmp_path: Path, name: str = "01_demo.ipynb") -> Path:
    """A small executed notebook: a title, a PNG output, an answer cell with its output folded."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    png = nbformat.v4.new_code_cell("plot()", execution_count=1)
    png.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG_1x1, "text/plain": "<Figure>"})]
    answer = nbformat.v4.new_code_cell("exercises.secret_answer_code()", execution_count=2)
    answer.metadata["tags"] = [ANSWER_TAG]
    answer.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": "<details>42</details>"},
                                             execution_count=2)]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · A demo\n\nIt shows a picture. Then more."), png, answer]
    path = tmp_path / "notebooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    (path.parent / "dag").mkdir(exist_ok=True)
    (path.parent / "dag" / "full.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    return path


def test_out_naming_a_file_is_one_line_and_exit_2(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    for out in (f, f / "below"):
        r = subprocess.run([sys.executable, "-m", "helixlib.workbook", "--out", str(out)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [f"error: --out: must be a folder, but {f} is a file, got '{out}'"]
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_html_edition_embeds_images_and_folds_answers(tmp_path):
    nb = _executed(tmp_path)
    pages = write_html_edition([nb], tmp_path / "html")
    page = (tmp_path / "html" / "01_demo.html").read_text()
    assert f"data:image/png;base64,{PNG_1x1}" in page  # embedded: no file beside the page to lose
    assert "secret_answer_code" not in page and "<details>42</details>" in page  # the answer's code is left out
    assert (tmp_path / "html" / "dag" / "full.svg").is_file()  # what the pages link to travels with them
    index = (tmp_path / "html" / "index.html").read_text()
    assert '<a href="01_demo.html"><b>01 · A demo</b></a>' in index and "It shows a picture." in index
    assert pages == [Page(nb, tmp_path / "html" / "01_demo.html", "01 · A demo", "It shows a picture. Then more.")]
    base64.b64decode(PNG_1x1)  # the fixture itself is a valid PNG payload


def test_index_lists_the_notebooks_in_reading_order(tmp_path):
    paths = notebook_paths()
    pages = [Page(p, tmp_path / f"{p.stem}.html", *title_and_summary(p)) for p in paths]
    index = index_html(pages)
    positions = [index.index(f'href="{p.stem}.html"') for p in paths]
    assert positions == sorted(positions) and len(positions) == len(paths) >= 8
    for p in pages:
        assert p.title.startswith(p.notebook.stem[:2]) and p.summary and "$" not in p.summary


def test_signed_notebooks_are_trusted(tmp_path):
    from nbformat.sign import NotebookNotary

    nb = _executed(tmp_path)
    (tmp_path / "jupyter").mkdir()
    notary = NotebookNotary(data_dir=str(tmp_path / "jupyter"))
    assert not notary.check_signature(nbformat.read(nb, as_version=4))
    sign_notebook(nb, data_dir=str(tmp_path / "jupyter"))
    assert notary.check_signature(nbformat.read(nb, as_version=4))


def test_to_html_is_written_atomically(tmp_path, monkeypatch):
    import nbconvert

    nb = _executed(tmp_path)
    out = tmp_path / "page.html"
    out.write_text("previous")

    def boom(self, *a, **k):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(nbconvert.HTMLExporter, "from_notebook_node", boom)
    with pytest.raises(RuntimeError):
        to_html(nb, out)
    assert out.read_text() == "previous" and [p.name for p in tmp_path.glob(".page.html*")] == []


def test_make_lab_allows_root_only_as_root_and_make_test_ensures_chromium():
    make = (ROOT / "Makefile").read_text()
    lab = make[make.index("\nlab:"):make.index("\nclean:")]
    assert '[ "$$(id -u)" = 0 ] && echo --allow-root' in lab and "starting JupyterLab with --allow-root" in lab
    assert "test: $(STAMP) dot chromium lint" in make and "scripts/ensure-chromium.sh" in make
    r = subprocess.run([str(ROOT / "scripts" / "ensure-chromium.sh")], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HELIX_CHROMIUM": sys.executable})
    assert r.returncode == 0, r.stderr  # an executable there: nothing to install


def test_executed_notebook_metadata_is_json(tmp_path):
    nb = _executed(tmp_path)
    assert json.loads(nb.read_text())["cells"][0]["cell_type"] == "markdown"
