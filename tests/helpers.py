"""Shared by the tests: the command line in a fresh interpreter, as a user runs it."""

import subprocess
import sys


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m helixlib ARGS``, stdout and stderr captured as text; bounded, so a hang fails
    the test instead of stalling the suite. ``kwargs`` go to ``subprocess.run`` (``env``, ``check``)."""
    return subprocess.run([sys.executable, "-m", "helixlib", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# 500 bytes that a YAML reader without an alias limit expands into 9^9 strings (gigabytes)
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
