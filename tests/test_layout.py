"""The package's shape: subpackages named for the architecture, imports one way, no cycles,
small files, and an installed package that works from any directory."""

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helixlib"

#: subpackage -> the subpackages it may import (itself included). Domain first, then the views
#: that render it, the commands that print it, and the workbook that runs everything.
ALLOWED = {
    "core": {"core"},
    "plan": {"core", "plan"},
    "runtime": {"core", "plan", "runtime"},
    "estimate": {"core", "plan", "estimate"},
    "dag": {"core", "plan", "runtime", "dag"},
    "validation": {"core", "plan", "runtime", "estimate", "validation"},
    "audit": {"core", "plan", "runtime", "estimate", "dag", "audit"},
    "views": {"core", "plan", "runtime", "estimate", "dag", "validation", "audit", "views"},
    "commands": {"core", "plan", "runtime", "estimate", "dag", "validation", "audit", "views", "commands"},
    "workbook": set(),  # filled below: everything
}
ALLOWED["workbook"] = set(ALLOWED) | {"workbook"}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """The helixlib modules ``path`` imports (``from helixlib.x import y`` counts helixlib.x.y
    when that is a module). ``module_level_only``: skip imports inside functions."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    mods = _modules()
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helixlib"):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in mods else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("helixlib")}
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_the_subpackages_are_the_architecture():
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert found == set(ALLOWED)
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]


def test_imports_go_one_way():
    """No domain module imports the views, the commands or the workbook; views never import the
    command layer (imports inside functions count too)."""
    bad = []
    for name, path in _modules().items():
        src = _subpackage(name)
        if src is None:
            continue
        for imported in _imports(path, module_level_only=False):
            dst = _subpackage(imported)
            if dst is not None and dst not in ALLOWED[src]:
                bad.append(f"{name} imports {imported}")
    assert bad == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (empty for a DAG)."""
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif state[nxt] == 0:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node, [node])
    return cycles


def _module_graph() -> dict[str, set[str]]:
    return {name: {m for m in _imports(path, module_level_only=True) if m != name}
            for name, path in _modules().items()}


def test_no_import_cycles():
    """Module-level imports form a DAG (an import cycle makes import order matter)."""
    assert find_cycles(_module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = _module_graph()
    graph["helixlib.plan.model"] = graph["helixlib.plan.model"] | {"helixlib.plan.build"}  # build imports model
    # build imports model (directly and through its modules): the injected edge closes a cycle
    assert any(c[-2:] == ["helixlib.plan.model", "helixlib.plan.build"] for c in find_cycles(graph))


def test_no_module_is_longer_than_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.slow
def test_installed_package_works_from_another_directory(tmp_path):
    """``pip install .`` (a real, non-editable install, built with this environment's setuptools:
    nothing is downloaded) into a folder of its own, then the commands from a directory with no
    checkout: the presets travel inside the package."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                        "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "helixlib" / "data" / "models" / "helix-70b.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))  # ahead of the checkout's editable install

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=elsewhere, env=env,
                              timeout=300)

    r = run("-c", "import helixlib; print(helixlib.__file__)")
    assert r.stdout.startswith(str(target)), (r.stdout, r.stderr)
    r = run("-m", "helixlib", "plan", "--model", "helix-70b", "-n", "4", "-m", "4", "--json")
    assert r.returncode == 0 and '"world_size": 16' in r.stdout, r.stderr
    r = run("-m", "helixlib", "estimate", "--hardware", "dgx-h100", "--json")
    assert r.returncode == 0, r.stderr
    r = run("-m", "helixlib", "audit", "--only", "model.", "--json")
    assert r.returncode == 0, r.stderr
