"""Every notebook runs headless with papermill (kernel python3, per-cell timeout, a bound on
the whole notebook), is stored without outputs, has exercises with folded answers, and reads well
once executed: no table longer than ~12 rows unfolded, no raw numpy reprs, no placeholders where
a drawing should be."""

import json
from html.parser import HTMLParser

import pytest

from helixlib.workbook.html import ANSWER_TAG, EXERCISE_TAG
from helixlib.workbook.notebooks import NotebookFailed, execute_notebook, notebook_paths

NOTEBOOKS = notebook_paths()
MAX_VISIBLE_ROWS = 12


def test_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:4] == ["00_overview", "01_partitioning", "02_shape_checks", "03_dag_drawings"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_and_with_parameters_cell(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_with_folded_answers_computed_by_helixlib(nb):
    """2-3 exercises (markdown tagged ``exercise``), each followed by its answer: a code cell tagged
    ``answer``, stored collapsed, that calls helixlib.workbook's exercises (tests/test_exercises.py
    recomputes each)."""
    cells = json.loads(nb.read_text())["cells"]
    tags = lambda c: c.get("metadata", {}).get("tags", [])
    asks = [i for i, c in enumerate(cells) if EXERCISE_TAG in tags(c)]
    assert 2 <= len(asks) <= 3, f"{nb.name}: {len(asks)} exercises"
    for i in asks:
        assert cells[i]["cell_type"] == "markdown"
        answer = cells[i + 1]
        assert answer["cell_type"] == "code" and ANSWER_TAG in tags(answer)
        assert answer["metadata"].get("jupyter", {}).get("source_hidden") is True
        assert "exercises" in "".join(answer["source"])
    assert sum(ANSWER_TAG in tags(c) for c in cells) == len(asks)


class _Tables(HTMLParser):
    """Row counts of the HTML tables that are not inside a <details> (visible without a click)."""

    def __init__(self):
        super().__init__()
        self.folded = 0
        self.visible_rows: list[int] = []
        self._stack: list[bool] = []  # per open table: is it visible

    def handle_starttag(self, tag, attrs):
        if tag == "details":
            self.folded += 1
        elif tag == "table":
            self._stack.append(self.folded == 0)
            if self._stack[-1]:
                self.visible_rows.append(0)
        elif tag == "tr" and self._stack and self._stack[-1]:
            self.visible_rows[-1] += 1

    def handle_endtag(self, tag):
        if tag == "details":
            self.folded -= 1
        elif tag == "table" and self._stack:
            self._stack.pop()


def visible_table_rows(html: str) -> list[int]:
    parser = _Tables()
    parser.feed(html)
    return parser.visible_rows


def test_the_table_counter_sees_through_folds():
    table = "<table><tr><td>1</td></tr><tr><td>2</td></tr></table>"
    assert visible_table_rows(table) == [2]
    assert visible_table_rows(f"<details><summary>s</summary>{table}</details>") == []


def readability_problems(cells: list[dict]) -> list[str]:
    """What a reader should not see in an executed notebook."""
    problems = []
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown":
            rows = sum(1 for line in "".join(c["source"]).splitlines() if line.startswith("|")) - 2
            if rows > MAX_VISIBLE_ROWS:
                problems.append(f"cell {i}: a markdown table of {rows} rows")
            continue
        for o in c.get("outputs", []):
            data = o.get("data", {})
            text = "".join(o.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))
            for bad in ("np.float64(", "np.int64(", "<IPython.core.display.SVG object>", "VBox(children="):
                if bad in text:
                    problems.append(f"cell {i}: shows {bad!r}")
            rows = [n for n in visible_table_rows("".join(data.get("text/html", ""))) if n - 1 > MAX_VISIBLE_ROWS]
            if rows:
                problems.append(f"cell {i}: an unfolded table of {rows[0] - 1} rows")
            if "image/svg+xml" in data:
                problems.append(f"cell {i}: an SVG output (not shown by an untrusted notebook; use a PNG)")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(nb, tmp_path):
    out = execute_notebook(nb, tmp_path / nb.name, cell_timeout=300, total_timeout=900)
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(c.get("outputs") for c in cells if c["cell_type"] == "code")
    assert readability_problems(cells) == []
    answers = [c for c in cells if ANSWER_TAG in c.get("metadata", {}).get("tags", [])]
    assert all("<details>" in "".join(o.get("data", {}).get("text/html", "")) for c in answers
               for o in c["outputs"]), "every answer is shown folded"


def _one_cell_notebook(tmp_path, code: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code)]
    src = tmp_path / "one.ipynb"
    nbformat.write(nb, src)
    return src


def test_a_failing_notebook_is_reported_and_set_aside(tmp_path):
    src = _one_cell_notebook(tmp_path, "raise RuntimeError('deliberate')")
    dst = tmp_path / "out" / "bad.ipynb"
    dst.parent.mkdir()
    dst.write_text("a previous run's result")
    with pytest.raises(NotebookFailed, match="deliberate"):
        execute_notebook(src, dst, cell_timeout=60, total_timeout=120)
    assert not dst.exists()  # nothing half-run (or stale) under the finished notebook's name
    assert "deliberate" in (dst.parent / "bad.failed.ipynb").read_text()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["bad.failed.ipynb"]


def test_a_notebook_over_its_bound_is_killed(tmp_path):
    src = _one_cell_notebook(tmp_path, "import time; time.sleep(600)")
    with pytest.raises(NotebookFailed, match="killed"):
        execute_notebook(src, tmp_path / "out" / "slow.ipynb", cell_timeout=600, total_timeout=15)
