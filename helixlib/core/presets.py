"""The shipped data (model and hardware presets, claims, recorded results) and the one
resolver for "a preset name or a YAML path" that every loader uses.

In a source checkout the data lives in ``data/`` beside ``helixlib/``; an installed
package carries the same files as ``helixlib/data`` (``pyproject.toml`` maps one onto the
other), so ``pip install .`` works from any directory.

YAML is read strictly: ``yaml.safe_load`` semantics (no ``!!python`` tags) and no aliases
(``*name``), so a small file cannot expand into gigabytes ("billion laughs").
"""

from __future__ import annotations

from pathlib import Path

import yaml

from helixlib.core.errors import HelixInputError

#: defaults shared by the commands, the audit and the explorer
DEFAULT_MODEL = "helix-70b"  # the deployment plan's model
DEFAULT_RUN_MODEL = "helix-tiny"  # what a real 16-process run on a CPU uses
VALIDATION_MODEL = "helix-small"  # the CPU validation run and the benchmarks
DEFAULT_CLUSTER = "dgx-a100"

_PACKAGE = Path(__file__).resolve().parents[1]
#: longest preset name or path accepted (a longer one is a mistake, not a file)
MAX_PATH_CHARS = 1024


def _find_data_dir() -> Path:
    installed = _PACKAGE / "data"
    return installed if installed.is_dir() else _PACKAGE.parent / "data"


DATA_DIR = _find_data_dir()
MODELS_DIR = DATA_DIR / "models"
HARDWARE_DIR = DATA_DIR / "hardware"
RESULTS_DIR = DATA_DIR / "results"
LOCAL_CLUSTER_FILE = HARDWARE_DIR / "cpu-local.yaml"  # what ``calibrate`` writes by default


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (the expansion bomb needs them)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def _short_enough(field: str, text: str) -> str:
    if len(text) > MAX_PATH_CHARS:
        raise HelixInputError(field, f"is longer than {MAX_PATH_CHARS} characters", text[:40] + "...")
    return text


def read_yaml(field: str, path: str | Path) -> object:
    """The YAML document in ``path``; any problem (missing, a folder, not UTF-8, bad YAML,
    an alias or a Python tag, a name too long) is one :class:`HelixInputError` naming ``field``."""
    path = Path(_short_enough(field, str(path)))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HelixInputError(field, "file does not exist", str(path)) from None
    except IsADirectoryError:
        raise HelixInputError(field, "is a folder, not a YAML file", str(path)) from None
    except UnicodeDecodeError:
        raise HelixInputError(field, "is not UTF-8 text", str(path)) from None
    except OSError as err:
        raise HelixInputError(field, f"cannot be read ({err.strerror or type(err).__name__})", str(path)) from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise HelixInputError(field, f"is not valid YAML ({problem}{line})", path.name) from None


def preset_names(folder: Path) -> list[str]:
    """Names of the ``*.yaml`` presets in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def resolve_preset(field: str, name_or_path: str | Path, folder: Path, known=None, what: str = "preset") -> Path:
    """A preset name (no suffix: ``folder/<name>.yaml``) or a path to a YAML file.
    ``known``: the names to list when a name is unknown (default: every preset in ``folder``)."""
    if not isinstance(name_or_path, (str, Path)):
        raise HelixInputError(field, "must be a preset name or a YAML file path", name_or_path)
    text = str(name_or_path)
    if not text.strip():
        raise HelixInputError(field, "must be a preset name or a YAML file path", text)
    path = Path(_short_enough(field, text))
    if not path.suffix:
        path = folder / f"{text}.yaml"
        if not path.is_file():
            names = preset_names(folder) if known is None else known
            raise HelixInputError(field, f"unknown {what}; known: {', '.join(names)}", text)
    return path


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes ``str`` subclasses (the StrEnum names) as plain strings."""


_Dumper.add_multi_representer(str, lambda dumper, value: dumper.represent_str(str(value)))


def dump_yaml(data) -> str:
    """``data`` as YAML text, keys in insertion order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
