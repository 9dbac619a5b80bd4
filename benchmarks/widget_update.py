"""Time from setting an explorer control's ``.value`` to the explorer having recomputed and
re-rendered its output (helixlib.views.widgets.Explorer), as a kernel would run it.

    .venv/bin/python benchmarks/widget_update.py

Each update: the estimate of the chosen plan, the ranking of every strategy at the same
settings, the HTML (memory bars, time breakdown, ranking table) and — only when the partition
changes — the rank map rendered to PNG with matplotlib (Agg). Displays go to a null stream
(outside a kernel ``display`` prints a repr; rendering in the browser is not counted).
Prints the median per kind of change over ``--repeats`` rounds. Recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import matplotlib

matplotlib.use("Agg")

from sweep_rate import machine  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from helixlib.views.widgets import Explorer  # noqa: E402

#: (control, two values to toggle between); the first group keeps the partition (rank map cached)
CHANGES = [
    ("flash", (True, False)),
    ("training", (True, False)),
    ("recompute", (True, False)),
    ("micro_batch", (4, 1)),
    ("seq_len", (4096, 10000)),
    ("hardware", ("dgx-h100", "dgx-a100")),
    ("qk_mode", ("gather_qk", "reduce_scores")),
    ("head_groups", (16, 4)),
    ("world_size", (64, 16)),
]


def time_changes(ex, changes, repeats: int) -> dict[str, list[float]]:
    """Seconds per ``.value`` change of each control in ``changes`` ((name, values to toggle between)),
    ``repeats`` rounds; every change must compute without an error."""
    times: dict[str, list[float]] = {name: [] for name, _ in changes}
    for _ in range(repeats):
        for name, values in changes:
            for v in values:
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    ex.controls[name].value = v
                times[name].append(time.perf_counter() - t0)
                assert ex.result.error is None, ex.result.error
    return times


def print_times(times: dict[str, list[float]], note: str) -> None:
    print(f"machine: {machine()}")
    print(f"{'control':>12}  median ms  max ms   ({note})")
    for name, ts in times.items():
        print(f"{name:>12}  {1e3 * statistics.median(ts):9.1f}  {1e3 * max(ts):6.1f}")
    every = [t for ts in times.values() for t in ts]
    print(f"all changes: median {1e3 * statistics.median(every):.1f} ms, "
          f"{sum(t < 0.1 for t in every) / len(every):.0%} under 100 ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        ex = Explorer(micro_batch=1)
    print_times(time_changes(ex, CHANGES, a.repeats), "helix-70b, 16 GPUs unless the control changes it")


if __name__ == "__main__":
    main()
