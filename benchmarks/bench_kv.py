"""Benchmark: the two second levels on 16 local ranks — prefill (forward) and decode step times,
the bytes each decode step moves (measured against the Plan), and HOP-B's overlap of the KV
shards' All-to-All (exposed communication with and without).

    .venv/bin/python benchmarks/bench_kv.py [--model helix-tiny-gqa] [--batch 8] [--seq-len 256]
                                            [--repeats 20] [--rounds 2] [--only "decode 4x4kv"]

Every configuration is launched ``--rounds`` times, interleaved, and reported as the median over
rounds of the median step (timed_steps: the slowest rank, all ranks starting together). The machine
is shared: compare the rows with each other (ratios), not with another day's.
"""

import argparse
import functools
import statistics

import torch
from _machine import machine

from helixlib.runtime.session import rank_session
from helixlib.runtime.steps import timed_steps


def rank_fn(spec, rank, world, local_rank=0, store_port=None, progress=None, repeats=20):
    """Time one step ``repeats`` times; return on rank 0 (median step s, blocked All-to-All s per step
    (slowest rank), every rank's recorded bytes == its Plan's, rank 0's bytes per step, the Plan's).
    A decode "step" is one token: the cache grows by one position per step."""
    import torch.distributed as dist

    from helixlib.plan import decode_plans
    from helixlib.runtime.decode import prepare_decode
    from helixlib.runtime.verify import run_step

    with rank_session(spec, rank, world, store_port=store_port) as s:
        trace = s.comm.trace
        if spec.phase == "decode":
            inputs = prepare_decode(s.plan, rank, s.comm, 1, spec.model.dtype, spec.seed, s.device)
            block, x = inputs.block, inputs.new[0]

            def step():
                with torch.no_grad():
                    block(x)
            plan = decode_plans(spec.model, spec.partition, 2)[1]  # the recorded step follows one warm-up
        else:
            inputs = s.prepare()
            step, plan = functools.partial(run_step, inputs, False), s.plan
        step()  # warm-up, then one recorded step: its bytes
        trace.clear()
        step()
        moved = sum(c.bytes for c in trace.collectives)
        planned = sum(c.bytes for c in plan.collectives_for_rank(rank, "forward"))
        trace.clear()
        times = timed_steps({"step": step}, repeats)
        blocked = sum(c.seconds for c in trace.collectives if c.kind == "all_to_all") / (repeats + 1)
        figures = torch.tensor([blocked, moved != planned], dtype=torch.float64)
        dist.all_reduce(figures, op=dist.ReduceOp.MAX)
        if rank == 0:
            return times["step"], figures[0].item(), not figures[1].item(), moved, planned
        return None


CONFIGS = [  # (label, partition kwargs, phase)
    ("prefill 4x4 head-dim", dict(head_groups=4, dim_segments=4), "prefill"),
    ("prefill 16x1 heads", dict(head_groups=16, dim_segments=1), "prefill"),
    ("prefill 4x4kv", dict(head_groups=4, kv_shards=4), "prefill"),
    ("prefill 1x16kv", dict(head_groups=1, kv_shards=16), "prefill"),
    ("decode 4x4 head-dim", dict(head_groups=4, dim_segments=4), "decode"),
    ("decode 16x1 heads", dict(head_groups=16, dim_segments=1), "decode"),
    ("decode 4x4kv", dict(head_groups=4, kv_shards=4), "decode"),
    ("decode 1x16kv", dict(head_groups=1, kv_shards=16), "decode"),
    ("decode 4x4kv HOP-B 2", dict(head_groups=4, kv_shards=4, hop_b=2), "decode"),
    ("decode 4x4kv HOP-B 4", dict(head_groups=4, kv_shards=4, hop_b=4), "decode"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="helix-tiny-gqa")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="run the configurations whose label contains this (e.g. 4x4kv)")
    a = ap.parse_args()
    from helixlib import Partition, load_model
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    print(machine())
    model = load_model(a.model, batch=a.batch, seq_len=a.seq_len, dtype="fp32")
    configs = [c for c in CONFIGS if a.only in c[0]]
    got = {label: [] for label, _, _ in configs}
    for _ in range(a.rounds):
        for label, kw, phase in configs:
            spec = RunSpec(model, Partition(**kw), phase=phase, verify=False)
            got[label].append(launch_local(spec, rank_fn=functools.partial(rank_fn, repeats=a.repeats)))
    print(f"{model.name} B={model.batch} S={model.seq_len} (decode: 1 token after S cached) fp32, 16 ranks x 1 thread, "
          f"gloo; median step of {a.repeats} (slowest rank), median of {a.rounds} launches")
    print(f"{'configuration':>22}  {'step ms':>8}  {'A2A blocked ms':>14}  {'bytes (rank 0)':>15}  {'== Plan':>7}")
    base = {}
    for label, _, phase in configs:
        rows = got[label]
        step = statistics.median(r[0] for r in rows)
        blocked = statistics.median(r[1] for r in rows)
        base.setdefault(phase, step)
        same = all(r[2] for r in rows)
        print(f"{label:>22}  {step * 1e3:8.2f}  {blocked * 1e3:14.3f}  {rows[0][3]:15,d}  {str(same):>7}"
              f"   x{step / base[phase]:.2f} of the first {phase} row")


if __name__ == "__main__":
    main()
