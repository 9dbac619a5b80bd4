"""The estimator against published GPU training runs it was never fitted to
(``data/results/published_validation.yaml``), and its kernel models against the published micro-level
data they were fitted to. Prints every row, the folded table, the summaries against the goal, and
the memory verdicts. No GPU needed: every figure is computed.

    .venv/bin/python benchmarks/validate_published.py
"""

import time

from _machine import machine

from helixlib.core.units import table
from helixlib.estimate.hardware import load_cluster
from helixlib.validation.published import evaluate, load_rows, memory_agreement, summary
from helixlib.views.estimate_step_views import (
    CURVE_HEADER,
    FOLDED_HEADER,
    GEMM_HEADER,
    SUMMARY_HEADER,
    curve_rows,
    folded_rows,
    gemm_fit_rows,
    summary_rows,
)


def main():
    print(machine())
    print("\nGEMM curves fitted to published GEMM tables (helixlib.validation.micro_fit):")
    print(table(gemm_fit_rows(), GEMM_HEADER))
    for name in ("dgx-a100", "dgx-h100"):
        print(f"\n{name}: the collective model against the published sweeps (from 1 MB):")
        print(table(curve_rows(load_cluster(name)), CURVE_HEADER))
    start = time.perf_counter()
    _, published = load_rows()
    results = evaluate(published)
    took = time.perf_counter() - start
    print(f"\n{len(results)} published rows predicted in {took:.1f} s (with the spread over unstated settings)\n")
    cells = [[r["id"], r["quantity"], f"{r['published']:.4g}", f"{r['predicted']:.4g}",
              f"{r['points']:+.1f} pt" if r["points"] is not None else f"{r['error']:+.1%}",
              f"{r['spread']:.1%}", "yes" if r["specified"] else "partly", "yes" if r["fits"] else "NO"]
             for r in results]
    print(table(cells, ["row", "quantity", "published", "predicted", "error", "spread", "specified", "fits"]))
    print("\n" + table(folded_rows(results), FOLDED_HEADER))
    print("\nfully specified rows, against the goal:\n" + table(summary_rows(summary(results)), SUMMARY_HEADER))
    for hw in ("dgx-a100", "dgx-h100"):
        print(f"\n{hw} only:\n" + table(summary_rows(summary(results, hardware=hw)), SUMMARY_HEADER))
    print("\nall rows (partly specified included):\n" + table(summary_rows(summary(results, False)), SUMMARY_HEADER))
    m = memory_agreement(results)
    print(f"\nmemory: {m['fit']} of {m['runs']} published runs fit in our estimate; do not fit: {m['do_not_fit']}")


if __name__ == "__main__":
    main()
