"""Timing inside launched ranks (``launch_local(..., rank_fn=...)``): every rank starts each
step together (a barrier), a step's time is the slowest rank's, and the figure is the median
over repeats. Used by the calibration microbenchmarks, the validation runs and the
benchmarks in ``benchmarks/``.
"""

from __future__ import annotations

import statistics
import time

import torch


def timed_steps(steps: dict, repeats: int, warmup: int = 1, span: bool = False) -> dict | None:
    """``steps``: name -> callable (one step, the same on every rank). Steps alternate, so the
    machine's noise hits them alike. Returns {name: median seconds} on rank 0, None elsewhere;
    every rank must call it with the same steps and counts.

    A step's seconds are the slowest rank's own (its end minus its start), or with ``span``
    the span from the first rank's start to the last rank's end (``perf_counter`` is
    CLOCK_MONOTONIC on Linux, one clock for every process): ranks leave a barrier milliseconds
    apart when they outnumber the cores, and a short step's slowest rank may have started
    late and run while the early ones were done — its own time then misses part of the
    contention that the span keeps."""
    import torch.distributed as dist

    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, fn in steps.items():
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            ends = torch.tensor([-t0 if span else 0.0, t1 if span else t1 - t0], dtype=torch.float64)
            dist.all_reduce(ends, op=dist.ReduceOp.MAX)
            if i >= warmup:
                times[name].append(ends.sum().item())
    if dist.get_rank() != 0:
        return None
    return {name: statistics.median(v) for name, v in times.items()}
