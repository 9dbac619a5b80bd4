"""How the Plan's cost grows with the number of ranks (issue 15, item 14): build, checks and the
JSON dict of helix-70b at n = 16 and m = 32 ... 512 (512 ... 8192 ranks), best of ``--repeats``,
with each time as a ratio to the smallest: linear growth gives ratios equal to the rank ratios.

    .venv/bin/python benchmarks/plan_scaling.py [--repeats 2] [--ranks 512,1024,2048,4096,8192]
    .venv/bin/python benchmarks/plan_scaling.py --source /tmp/base   # another checkout, e.g.
        # git archive 3c9d286 | tar -x -C /tmp/base   (the code before issue 15)
"""

import argparse
import os
import sys
import time

from _machine import machine


def seconds(model, m: int, repeats: int) -> float:
    from helixlib import Partition, build_plan
    from helixlib.plan.checks import run_checks

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = build_plan(model, Partition(16, m))
        plan.to_dict(run_checks(plan))
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ranks", default="512,1024,2048,4096,8192")
    ap.add_argument("--source", default=None, help="time the helixlib of this checkout instead")
    a = ap.parse_args()
    if a.source:  # ahead of the editable install's finder
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, a.source)
    from helixlib import load_model

    print(machine(), f"load average {os.getloadavg()[0]:.1f}", f"helixlib from {a.source or 'this checkout'}")
    model = load_model("helix-70b")
    rows = [(g, seconds(model, g // 16, a.repeats)) for g in map(int, a.ranks.split(","))]
    print(f"{'ranks':>6} {'seconds':>8} {'x ranks':>8} {'x time':>7}")
    for ranks, t in rows:
        print(f"{ranks:>6} {t:>8.2f} {ranks / rows[0][0]:>8.0f} {t / rows[0][1]:>7.1f}")


if __name__ == "__main__":
    main()
