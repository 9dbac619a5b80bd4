"""Benchmark (c): the 16-rank partitioned block against the dense block in one process, on the
same machine (the dense block gets all the cores as intra-op threads), forward+backward.

    .venv/bin/python benchmarks/bench_overhead.py [--model helix-small] [--repeats 5]
"""

import argparse
import functools
import os
import statistics
import time

import torch
from _machine import machine

from helixlib.runtime.session import rank_session
from helixlib.runtime.steps import timed_steps


def rank_fn(spec, rank, world, local_rank=0, store_port=None, progress=None, repeats=5):
    from helixlib.runtime.verify import run_step

    with rank_session(spec, rank, world, store_port=store_port) as s:
        inputs = s.prepare()
        return timed_steps({"step": lambda: run_step(inputs, True)}, repeats)


def dense_step_seconds(model, repeats: int) -> float:
    from helixlib.runtime.dense import TORCH_DTYPES, dense_block, init_input, init_weights

    torch.set_num_threads(os.cpu_count())
    w = {k: v.requires_grad_(True) for k, v in init_weights(model, 0, TORCH_DTYPES[model.dtype]).items()}
    x, gy = init_input(model, 0, TORCH_DTYPES[model.dtype])
    times = []
    for i in range(repeats + 1):
        xr = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        dense_block(xr, w, model.heads, model.causal).backward(gy)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="helix-small")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from helixlib import Partition, load_model
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    print(machine())
    model = load_model(a.model)
    dense, rows = [dense_step_seconds(model, a.repeats)], []
    for n, m in ((4, 4), (16, 1), (1, 16)):  # alternate 16-rank runs and dense runs
        r = launch_local(RunSpec(model, Partition(n, m)), rank_fn=functools.partial(rank_fn, repeats=a.repeats))
        rows.append((f"{n}x{m}", r["step"]))
        dense.append(dense_step_seconds(model, a.repeats))
    base = statistics.median(dense)
    print(f"{model.name} (B={model.batch}, L={model.seq_len}, D={model.hidden}, {model.dtype}), forward+backward, "
          f"median of {a.repeats}; 16 ranks x 1 thread vs 1 process x {os.cpu_count()} threads")
    print(f"dense, 1 process: {base * 1e3:.1f} ms (median of {len(dense)} measurements between the runs: "
          f"{', '.join(f'{d * 1e3:.0f}' for d in dense)} ms)")
    for name, dist_s in rows:
        print(f"{name:>5}: 16 ranks {dist_s * 1e3:8.1f} ms   overhead ratio vs dense {dist_s / base:5.2f}x")


if __name__ == "__main__":
    main()
