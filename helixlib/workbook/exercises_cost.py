"""The exercises of notebooks 04–07 (estimates, the distributed run, the design space, the
audit), answered by helixlib; see :mod:`helixlib.workbook.exercises`."""

from __future__ import annotations

import math
from collections import Counter

from helixlib.core.units import si
from helixlib.estimate.design_space import best, evaluate, grid
from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.plan import CollectiveKind, Partition, build_plan, bus_factor, load_model
from helixlib.views.formats import duration
from helixlib.workbook.exercises import Answer

# ---- 04 · runtime and memory ----------------------------------------------------------------


def roofline_bound(model: str, head_groups: int, dim_segments: int, hardware: str, op: str) -> Answer:
    """Is ``op`` compute- or memory-bound on ``hardware``, and why: its FLOPs per byte against the
    device's ridge point (peak FLOP/s over memory bandwidth)."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    cluster = load_cluster(hardware)
    est = estimate(plan, cluster, search_micro_batch=False)
    row = next(r for r in est.op_rows() if r["name"] == op)
    intensity = row["flops"] / row["bytes"]
    dev = cluster.device
    ridge = dev.peak_flops(plan.model.dtype) / dev.memory_bandwidth
    return Answer(row["bound"], f"{op}: {si(row['flops'], 'FLOP')} over {si(row['bytes'], 'B')} = {intensity:.3g} "
                                f"FLOP per byte, against the {dev.name}'s ridge point "
                                f"{si(dev.peak_flops(plan.model.dtype), 'FLOP/s')} / {si(dev.memory_bandwidth, 'B/s')} "
                                f"= {ridge:.0f} FLOP per byte. With its efficiencies, FLOP time "
                                f"{duration(row['compute_s'])}, memory time {duration(row['memory_s'])}: "
                                f"{row['bound']}-bound.")


def allreduce_time(model: str, head_groups: int, dim_segments: int, hardware: str) -> Answer:
    """The score all-reduce of one layer (forward, whole batch) by the α–β formula, term by term."""
    est = estimate(build_plan(load_model(model), Partition(head_groups, dim_segments)), load_cluster(hardware),
                   search_micro_batch=False)
    r = next(r for r in est.collective_rows() if r["name"] == "scores_allreduce" and r["run"] == "forward")
    f = bus_factor(CollectiveKind.ALL_REDUCE, r["group_size"])
    busbw = r["bytes"] * f / r["bandwidth_s"]
    return Answer(r["time_s"], f"α + S·f/busbw = {duration(r['alpha_s'])} + {si(r['bytes'], 'B')} · {f:.3g} / "
                               f"{si(busbw, 'B/s')} = {duration(r['time_s'])} (the bandwidth term is everything).")


def largest_micro_batch(model: str, head_groups: int, dim_segments: int, hardware: str, training: bool,
                        flash: bool, recompute: bool) -> Answer:
    """The largest micro-batch that fits, or None."""
    est = estimate(build_plan(load_model(model), Partition(head_groups, dim_segments)), load_cluster(hardware),
                   training, flash, recompute, micro_batch=1)
    b = est.largest_micro_batch
    return Answer(b, f"at micro-batch 1 the GPU needs {si(float(est.memory.total), 'B')} of "
                     f"{si(est.memory.capacity, 'B')}; " + (f"the largest micro-batch that fits is {b}." if b else
                                                             "nothing fits, not even one sequence."))


# ---- 05 · the distributed run ---------------------------------------------------------------


def rank_bytes(model: str, head_groups: int, dim_segments: int, rank: int, name: str) -> Answer:
    """The bytes ``rank`` passes to collective ``name`` in forward (what its trace must record)."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    c = next(c for c in plan.collectives_for_rank(rank, "forward") if c.name == name)
    return Answer(c.bytes, f"{name} on rank {rank}: {c.elements:,} elements × {plan.model.dtype_bytes} bytes = "
                           f"{si(c.bytes, 'B')} ({c.kind} over ranks {list(c.ranks)}).")


def segment_local_by_partition(model: str, partitions: list[tuple[int, int]]) -> Answer:
    """segment_local's forward error for several n × m: does more segments mean a larger error?"""
    from helixlib.workbook.exercises import segment_local_error

    errors = {f"{n}x{m}": segment_local_error(model, n, m).value for n, m in partitions}
    return Answer(errors, "forward error of segment_local: " + ", ".join(f"{k}: {v:.3g}" for k, v in errors.items())
                  + ". With m = 1 there is nothing to sum (pure head split, exact); every m > 1 is wrong.")


# ---- 06 · the design space ------------------------------------------------------------------


def fastest(model: str, hardware: str, world_size: int, seq_len: int, training: bool,
            micro_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> Answer:
    """The fastest configuration that fits at one (hardware, G, L, training) cell of notebook 06."""
    t = grid(models=(model,), hardware=(hardware,), world_sizes=(world_size,), seq_lens=(seq_len,),
             micro_batches=micro_batches, flash=(False, True), recompute=(False, True), training=(training,))
    rows = best(t, evaluate(t), (), family=False)
    if not rows:
        return Answer(None, "nothing fits at these settings.")
    top = min(rows, key=lambda r: r["time_dataflow"])
    return Answer(top["best"], f"{top['best']}: {duration(top['time_dataflow'])} per step, MFU {top['mfu']:.0%}, "
                               f"{si(top['memory'], 'B')} per GPU.")


def ring_slowdown(model: str, hardware: str, seq_len: int) -> Answer:
    """Ring attention from 8 to 16 GPUs: step time, K/V ring time and nodes spanned."""
    from helixlib.views.design_views import ring_points

    a, b = ring_points(model, hardware, [8, 16], seq_len)
    return Answer(b.dataflow / a.dataflow,
                  f"{duration(a.dataflow)} on 8 GPUs ({a.nodes} node) -> {duration(b.dataflow)} on 16 ({b.nodes} "
                  f"nodes): x{b.dataflow / a.dataflow:.2f}. The K/V ring grows from {duration(a.kv_ring)} to "
                  f"{duration(b.kv_ring)} (x{b.kv_ring / a.kv_ring:.1f}) because its every step now waits for the "
                  "inter-node link, while the attention it could hide behind halves.")


def head_sharding_schemes(model: str, world_size: int) -> Answer:
    """Which strategies can run on ``world_size`` GPUs at all (the design space's validity rules)."""
    t = grid(models=(model,), world_sizes=(world_size,))
    res = evaluate(t)
    from helixlib.estimate.design_space import labels

    names = sorted({str(n) for n, ok in zip(labels(t), res["valid"]) if ok})
    m = load_model(model)
    return Answer(names, f"on {world_size} GPUs: " + ", ".join(names) + f". Megatron, Ulysses and head-parallel "
                         f"need G | H ({m.heads} heads), ring attention G | L ({m.seq_len:,} tokens); helix needs only "
                         f"n | H and m | d = {m.head_dim}.")


# ---- 07 · the audit -------------------------------------------------------------------------


def verdict_counts(verdicts: list) -> Answer:
    """How many claims hold, are wrong, or cannot be checked as stated."""
    c = Counter(v.verdict for v in verdicts)
    return Answer(dict(c), f"{len(verdicts)} claims: " + ", ".join(f"{n} {k}" for k, n in c.most_common()) + ".")


def furthest_off(verdicts: list) -> Answer:
    """The claim of a number furthest from its computed value (largest |log10(computed / claimed)|;
    bounds such as "< 5 %" are left out: their ratio measures a margin, not a slip)."""
    numeric = [v for v in verdicts if v.ratio and v.claim.compare == "equal"]
    v = max(numeric, key=lambda v: abs(math.log10(v.ratio)))
    return Answer(v.claim.id, f"{v.claim.id}: computed / claimed = {v.ratio:.3g} (a factor "
                              f"{max(v.ratio, 1 / v.ratio):.3g} off). {v.explanation}")


def variant_share(context: dict | None = None) -> Answer:
    """Communication over compute with each output variant (the headline figures)."""
    from helixlib.audit.headline import headline_figures

    h = headline_figures(context)
    shares = {str(k): v.communication_over_compute for k, v in h.variants.items()}
    return Answer(shares, "communication / compute: " + ", ".join(f"output={k}: {v:.0%}" for k, v in shares.items())
                  + f". The audit reads the plan as output={h.audited}; either way far above the claimed < 5 %.")
