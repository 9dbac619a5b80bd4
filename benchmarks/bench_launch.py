"""Benchmark (a): 16-rank start-up and a verified forward+backward of helix-tiny.

Each start method runs in a fresh interpreter (a cold start, as a user gets it), then a second
launch in the same interpreter (warm: the fork server is already up). Also the whole CLI
command, end to end.

    .venv/bin/python benchmarks/bench_launch.py [--repeats 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from _machine import machine


def one(method: str) -> dict:
    from helixlib import Partition, load_model
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    spec = RunSpec(load_model("helix-tiny"), Partition(4, 4), backward=True)
    t0 = time.perf_counter()
    cold = launch_local(spec, method)
    cold_total = time.perf_counter() - t0
    warm = launch_local(spec, method)
    assert cold.ok and warm.ok
    return {"startup_s": cold.timings["startup_s"], "wall_s": cold.timings["wall_s"], "cold_total_s": cold_total,
            "warm_wall_s": warm.timings["wall_s"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", default=None)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    print(machine())
    rows = {}
    for method in ("forkserver", "fork", "spawn"):
        runs = []
        for _ in range(a.repeats):
            out = subprocess.run([sys.executable, __file__, "--one", method], capture_output=True, text=True,
                                 check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        rows[method] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    cli = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "helixlib", "run", "--model", "helix-tiny", "-n", "4", "-m", "4",
                        "--backward"], capture_output=True, check=True)
        cli.append(time.perf_counter() - t0)
    print(f"helix-tiny 4x4, 16 ranks, forward+backward verified; median of {a.repeats}")
    print(f"{'start method':<12} {'start-up s':>10} {'launch wall s':>13} {'warm wall s':>11} {'vs forkserver':>13}")
    for m, r in rows.items():
        print(f"{m:<12} {r['startup_s']:>10.2f} {r['wall_s']:>13.2f} {r['warm_wall_s']:>11.2f} "
              f"{r['wall_s'] / rows['forkserver']['wall_s']:>12.2f}x")
    print(f"CLI end to end (python -m helixlib run ... --backward, incl. interpreter start): "
          f"{statistics.median(cli):.2f} s")


if __name__ == "__main__":
    main()
