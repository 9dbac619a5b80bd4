"""Every notebook runs headless with papermill (kernel python3, per-cell timeout, a bound on
the whole notebook) and is stored without outputs."""

import json

import pytest

from helixlib.workbook.notebooks import NotebookFailed, execute_notebook, notebook_paths

NOTEBOOKS = notebook_paths()


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


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(nb, tmp_path):
    out = execute_notebook(nb, tmp_path / nb.name, cell_timeout=300, total_timeout=900)
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(c.get("outputs") for c in cells if c["cell_type"] == "code")


def _one_cell_notebook(tmp_path, code: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code)]
    src = tmp_path / "one.ipynb"
    nbformat.write(nb, src)
    return src


def test_a_failing_notebook_is_reported(tmp_path):
    src = _one_cell_notebook(tmp_path, "raise RuntimeError('deliberate')")
    with pytest.raises(NotebookFailed, match="deliberate"):
        execute_notebook(src, tmp_path / "out" / "bad.ipynb", cell_timeout=60, total_timeout=120)


def test_a_notebook_over_its_bound_is_killed(tmp_path):
    src = _one_cell_notebook(tmp_path, "import time; time.sleep(600)")
    with pytest.raises(NotebookFailed, match="killed"):
        execute_notebook(src, tmp_path / "out" / "slow.ipynb", cell_timeout=600, total_timeout=15)
