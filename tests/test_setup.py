"""The set-up files agree with each other and with the README."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch", "python-graphviz": "graphviz"}
CONDA_ONLY = {"python", "pip", "graphviz"}  # the interpreter, pip itself, the `dot` program


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_and_pyproject_name_the_same_packages():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pip_names = {_name(d) for d in pyproject["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_names = {CONDA_TO_PIP.get(_name(d), _name(d)) for d in conda if _name(d) not in CONDA_ONLY}
    assert "graphviz" in {_name(d) for d in conda}, "the dot program must come from conda-forge's graphviz"
    assert conda_names == pip_names
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def test_lock_pins_every_direct_dependency_exactly():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = {_name(line): line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    for dep in pyproject["project"]["dependencies"]:
        name = _name(dep).replace("_", "-")
        key = next(k for k in lock if k.replace("_", "-") == name)
        assert "==" in lock[key], lock[key]
    assert lock["torch"] == "torch==2.13.0"


def test_readme_commands_and_ci():
    readme = (ROOT / "README.md").read_text()
    assert "make workbook" in readme and "make test" in readme and "make lab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
