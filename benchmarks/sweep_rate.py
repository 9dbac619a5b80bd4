"""Configurations per second of the vectorized design-space evaluation (helixlib.estimate.design_space).

    .venv/bin/python benchmarks/sweep_rate.py

Builds a grid of about 1.2e5 configurations (3 models x 3 clusters x G in 8..64 x 4 sequence
lengths x 2 batches x 4 micro-batches x flash x recompute x training x every strategy, helix
expanded over its partitions and qk modes) and times ``evaluate`` over it; prints the median of
``--repeats`` runs. Recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from helixlib.estimate.design_space import evaluate, grid


def machine() -> str:
    """The shared machine line (benchmarks/_machine.py) plus the load average: this machine is shared."""
    from _machine import machine as line  # benchmarks/ is on sys.path when run as a script

    return f"{line()}, load average {os.getloadavg()[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    t0 = time.perf_counter()
    table = grid(models=("helix-70b", "gpt3-175b", "opt-66b"), hardware=("dgx-a100", "dgx-h100", "dgx-h200"),
                 world_sizes=(8, 16, 32, 64), seq_lens=(2048, 4096, 8192, 16384), batches=(64, 256),
                 micro_batches=(1, 2, 4, 8), flash=(False, True), recompute=(False, True), training=(False, True))
    build = time.perf_counter() - t0
    n = len(table["strategy"])
    evaluate(table)  # warm-up: presets loaded, numpy paths touched
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        res = evaluate(table)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"machine: {machine()}")
    print(f"configurations: {n:,} ({int(res['valid'].sum()):,} valid); grid built in {build:.2f} s")
    print(f"evaluate: median {med:.3f} s over {a.repeats} runs (min {min(times):.3f}, max {max(times):.3f})")
    print(f"rate: {n / med:,.0f} configurations/s")


if __name__ == "__main__":
    main()
