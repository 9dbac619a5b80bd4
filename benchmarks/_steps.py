"""Timing steps inside launched ranks: every rank starts each step together (barrier), a
step's time is the slowest rank's, and the figure is the median over repeats."""

import statistics
import time

import torch
import torch.distributed as dist


def timed_steps(steps: dict, repeats: int, warmup: int = 1) -> dict | None:
    """``steps``: name -> callable running one forward+backward. Steps alternate, so the
    machine's noise hits them alike. Returns {name: median seconds} on rank 0, None elsewhere."""
    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, fn in steps.items():
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)
            if i >= warmup:
                times[name].append(dt.item())
    if dist.get_rank() != 0:
        return None
    return {name: statistics.median(v) for name, v in times.items()}
