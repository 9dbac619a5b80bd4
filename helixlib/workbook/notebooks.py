"""Executing the workbook's notebooks with papermill, bounded.

papermill's ``--execution-timeout`` bounds one cell; nothing bounds a whole notebook,
so each notebook runs in its own process session and the whole session (papermill and
its kernel) is killed if it outlives ``total_timeout``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"  # a source checkout's notebooks/


class NotebookFailed(RuntimeError):
    pass


def notebook_paths() -> list[Path]:
    """The workbook's notebooks, in reading order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(src: Path, dst: Path, parameters: dict | None = None,
                     cell_timeout: int = 600, total_timeout: int = 1800) -> Path:
    """Run ``src`` with papermill (kernel ``python3``) into ``dst``; raise NotebookFailed
    with papermill's last lines on an error or a timeout. The kernel starts in dst's folder.

    papermill writes its output as it goes; it writes to a temporary name beside ``dst``, renamed
    to ``dst`` when the notebook finished, or to ``<name>.failed.ipynb`` (with the error in it)
    when not: a half-run notebook never sits under the finished one's name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    running = dst.with_name(f".{dst.stem}.running.ipynb")
    failed = dst.with_name(f"{dst.stem}.failed.ipynb")
    for stale in (dst, failed):  # a previous run's result must not pass for this one's
        stale.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(parameters or {}, f)
        params_file = f.name
    cmd = [sys.executable, "-m", "papermill", str(src), str(running), "-k", "python3", "--no-progress-bar",
           "--execution-timeout", str(cell_timeout), "-f", params_file, "--cwd", str(dst.parent)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend puts figures into the notebook
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    try:
        out, _ = proc.communicate(timeout=total_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        _set_aside(running, failed)
        raise NotebookFailed(f"{src.name}: still running after {total_timeout}s, killed\n{_tail(out)}") from None
    finally:
        os.unlink(params_file)
    if proc.returncode != 0:
        _set_aside(running, failed)
        raise NotebookFailed(f"{src.name}: papermill exited {proc.returncode}\n{_tail(out)}")
    os.replace(running, dst)
    return dst


def _set_aside(running: Path, failed: Path) -> None:
    if running.exists():
        os.replace(running, failed)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])
