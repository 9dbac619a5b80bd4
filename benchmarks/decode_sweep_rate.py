"""Configurations per second of the vectorised decode sweep (helixlib.estimate.decode_space).

    .venv/bin/python benchmarks/decode_sweep_rate.py

Builds the decode grid of the Helix study (every strategy x partition x pipeline stages x replicas on
1..64 GPUs, 13 batches) at 8 contexts (4K ... 8M tokens) and times ``evaluate_decode`` on
helix-paper-llama-405b / gb200-nvl72; then times the Pareto frontiers and the comparisons on it. Prints the
median of ``--repeats`` runs. Recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sweep_rate import machine  # benchmarks/ is on sys.path when run as a script

from helixlib.estimate.decode_space import decode_grid, evaluate_decode
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.pareto import compare, frontiers
from helixlib.plan.model import load_model


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    model, cluster = load_model("helix-paper-llama-405b"), load_cluster("gb200-nvl72")
    t0 = time.perf_counter()
    table = decode_grid(contexts=tuple(2 ** k for k in range(12, 24)))
    build = time.perf_counter() - t0
    n = len(table["strategy"])
    res = evaluate_decode(table, model, cluster)  # warm-up
    med = _median(lambda: evaluate_decode(table, model, cluster), a.repeats)
    front = _median(lambda: frontiers(table, res), a.repeats)
    comp = _median(lambda: compare(table, res), a.repeats)
    print(f"machine: {machine()}")
    print(f"configurations: {n:,} ({int(res['valid'].sum()):,} valid, {int(res['fits'].sum()):,} fit); "
          f"grid built in {build:.2f} s")
    print(f"evaluate_decode: median {med:.3f} s over {a.repeats} runs -> {n / med:,.0f} configurations/s")
    print(f"frontiers (3 strategies): median {1e3 * front:.1f} ms; compare: median {1e3 * comp:.1f} ms")


if __name__ == "__main__":
    main()
