"""How long `make workbook` takes: this checkout's ``python -m helixlib.workbook``, optionally side by
side with another checkout's (``--baseline DIR``, run with ``PYTHONPATH=DIR`` so its helixlib and
notebooks are used), alternating, so the shared machine's load hits both alike.

    .venv/bin/python benchmarks/workbook_time.py                      # this checkout, one round
    .venv/bin/python benchmarks/workbook_time.py --baseline /tmp/base   # side by side, as ratios

Prints the wall time and the CPU time of each run (the workbook and everything it starts), each
notebook's time, and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(checkout: Path | None) -> dict:
    """One ``python -m helixlib.workbook`` into a temporary folder: wall s, CPU s, per-notebook s."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, "-m", "helixlib.workbook", "--out", out], capture_output=True, text=True,
                           cwd=checkout or ROOT, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"workbook failed ({checkout or ROOT}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    notebooks = {m.group(1): float(m.group(2)) for m in re.finditer(r"\] (\S+)\.ipynb \.\.\. ok \(([\d.]+) s\)",
                                                                     r.stdout)}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "notebooks": notebooks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout to time side by side")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    print(machine(), "| load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    runs: dict[str, list[dict]] = {"this": [], "baseline": []}
    for _ in range(a.rounds):
        runs["this"].append(run(None))
        if a.baseline:
            runs["baseline"].append(run(a.baseline))
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            print(f"{name:>8} round {i + 1}: wall {r['wall']:.1f} s, CPU {r['cpu']:.1f} s; "
                  + ", ".join(f"{k[:2]} {v:.1f}" for k, v in r["notebooks"].items()))
    if a.baseline:
        for key in ("wall", "cpu"):
            ratio = sum(r[key] for r in runs["this"]) / sum(r[key] for r in runs["baseline"])
            print(f"{key}: this / baseline = {ratio:.2f}")
    print("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
