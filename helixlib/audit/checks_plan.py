"""Checks a claims file can call that read the Plan, its checks, and real runs of the partition
on a small model (``check:`` names in ``data/plan_claims.yaml``). They only read helixlib's
results, never a typed number."""

from __future__ import annotations

from helixlib.audit.context import AuditContext
from helixlib.audit.registry import Computed, check
from helixlib.core.errors import HelixInputError
from helixlib.core.presets import DEFAULT_RUN_MODEL
from helixlib.core.units import si
from helixlib.plan import Partition, load_model, valid_partitions


@check("model")
def model_value(ctx: AuditContext, field: str) -> Computed:
    """A model dimension, or a derived one: mlp_ratio (F/D), head_dim, params."""
    m = ctx.model
    derived = {"mlp_ratio": m.mlp_hidden / m.hidden, "head_dim": m.head_dim, "params": m.params,
               "params_per_block": m.params_per_block}
    fields = sorted(set(derived) | set(m.to_dict()) - {"name", "source", "dtype", "causal"})
    value = derived[field] if field in derived else getattr(m, ctx.one_of("field", field, fields))
    extra = f" ({m.layers} blocks of {m.params_per_block:,})" if field == "params" else ""
    return Computed(value, f"{field} = {value:,}{extra}" if not isinstance(value, float) else f"{field} = {value:g}")


@check("head_group")
def head_group(ctx: AuditContext, group: int) -> Computed:
    """The heads a head group owns and the GPUs (ranks) it is on."""
    group = ctx.index("group", group, ctx.partition.head_groups)
    shards = [s for s in ctx.plan.shards if s.head_group == group]
    heads = sorted({h for s in shards for h in range(*s.heads)})
    gpus = [s.rank for s in shards]
    return Computed({"heads": heads, "gpus": gpus}, f"head group {group}: heads {heads} on GPUs {gpus}")


@check("dim_segment")
def dim_segment(ctx: AuditContext, segment: int) -> Computed:
    """The width of a dim segment and the offset of its GPU inside the group (rank - g·m)."""
    m = ctx.partition.dim_segments
    segment = ctx.index("segment", segment, m)
    shards = [s for s in ctx.plan.shards if s.dim_segment == segment]
    widths = {s.dim_slice[1] - s.dim_slice[0] for s in shards}
    offsets = {s.rank - s.head_group * m for s in shards}
    value = {"width": widths.pop() if len(widths) == 1 else sorted(widths),
             "gpu_offset": offsets.pop() if len(offsets) == 1 else sorted(offsets)}
    return Computed(value, f"segment {segment}: d_s = {value['width']} columns of each head, GPU base + "
                           f"{value['gpu_offset']}")


@check("partition_count")
def partition_count(ctx: AuditContext) -> Computed:
    p = ctx.partition
    ok = ctx.checks["one_partition_per_rank"].ok
    return Computed({"partitions": p.head_groups * p.dim_segments, "gpus": ctx.plan.world_size, "one_each": ok},
                    f"{p.head_groups} x {p.dim_segments} = {p.world_size} partitions on {ctx.plan.world_size} GPUs, "
                    f"one each: {ok}")


@check("shape")
def shape(ctx: AuditContext, step: str, part: str = "output", index: int = 0, rank: int = 0,
          layout: list[int] | None = None, merge_heads: bool = False, qk_mode: str | None = None,
          output: str | None = None) -> Computed:
    """A shape from the Plan: the output of an op or communication step, an op's index-th
    activation input, or its index-th weight; ``layout`` permutes it into the claim's order,
    ``merge_heads`` views [.., heads, d] as [.., heads·d] (a free reshape)."""
    s = ctx.step(ctx.plan_for(qk_mode, output), rank, step)
    ctx.one_of("part", part, ("output", "input", "weight"))
    if part == "output":
        dims = s.output_shape
    elif part == "input":
        inputs = s.input_shapes if hasattr(s, "input_shapes") else (s.input_shape,)
        dims = inputs[ctx.index("index", index, len(inputs))]
    else:
        params = getattr(s, "params", ())
        dims = params[ctx.index("index", index, len(params))][1] if params else ctx.index("index", index, 0)
    dims = list(dims)
    if layout is not None and sorted(layout) != list(range(len(dims))):
        raise HelixInputError("args.layout", f"must be a permutation of 0..{len(dims) - 1}", layout)
    shown = [dims[i] for i in layout] if layout else dims
    if merge_heads:
        shown = shown[:-2] + [shown[-2] * shown[-1]]
    note = f" (viewed in the claim's layout; the Plan's shape is {dims})" if layout or merge_heads else ""
    return Computed(shown, f"{step} {part}{'' if part == 'output' else f' {index}'} on rank {rank}: {shown}{note}")


@check("flops")
def flops(ctx: AuditContext, ops: list[str], scope: str = "rank", rank: int = 0) -> Computed:
    """FLOPs (2 per multiply-add) of the named ops on one rank, or summed over all ranks."""
    plan = ctx.plan
    rank = ctx.index("rank", rank, plan.world_size)
    ranks = [rank] if ctx.one_of("scope", scope, ("rank", "all")) == "rank" else range(plan.world_size)
    names = [o.name for o in plan.rank_ops(0)]
    if not isinstance(ops, list) or not ops:
        raise HelixInputError("args.ops", "must be a non-empty list of op names", ops)
    total = sum(plan.op(r, ctx.one_of("ops", name, names)).flops for r in ranks for name in ops)
    where = f"rank {rank}" if scope == "rank" else f"all {plan.world_size} ranks"
    return Computed(total, f"{' + '.join(ops)} on {where}: {si(total, 'FLOP')} (2 FLOPs per multiply-add)")


@check("structural")
def structural(ctx: AuditContext, names: list[str]) -> Computed:
    """The plan's structural checks (helixlib.plan.checks) by name; true when all pass."""
    results = [ctx.checks[ctx.one_of("names", n, tuple(ctx.checks))] for n in names]
    return Computed(all(r.ok for r in results), "; ".join(f"{r.name}: {'ok' if r.ok else 'FAIL'} ({r.detail})"
                                                          for r in results))


@check("balance")
def balance(ctx: AuditContext, quantity: str = "flops") -> Computed:
    """max / min over ranks of FLOPs or memory (1.0 = perfectly balanced)."""
    plan = ctx.plan
    if ctx.one_of("quantity", quantity, ("flops", "memory")) == "flops":
        per = [plan.rank_flops(r) for r in range(plan.world_size)]
    else:
        per = [m.total_bytes for m in plan.memory()]
    return Computed(max(per) / min(per), f"{quantity} per rank between {si(min(per))} and {si(max(per))}")


@check("group_size")
def group_size(ctx: AuditContext, collective: str) -> Computed:
    """Ranks in each group a collective runs on, and how many such groups run at once."""
    ctx.one_of("collective", collective, tuple(dict.fromkeys(c.name for c in ctx.plan.collectives)))
    cs = [c for c in ctx.plan.collectives if c.name == collective]
    sizes = sorted({len(c.ranks) for c in cs})
    value = sizes[0] if len(sizes) == 1 else sizes
    groups = ", ".join(str(list(c.ranks)) for c in cs[:4])
    return Computed(value, f"{collective}: {len(cs)} groups of {value} ranks ({groups})")


@check("collectives_between")
def collectives_between(ctx: AuditContext, after: str, before: str, output: str | None = None) -> Computed:
    """Number of forward collectives the exact dataflow needs between two ops of rank 0."""
    prog = ctx.plan_for(output=output).programs[0]
    names = [s.name for s in prog]
    after, before = ctx.one_of("after", after, names), ctx.one_of("before", before, names)
    between = [s for s in prog[names.index(after) + 1:names.index(before)] if getattr(s, "forward_kind", None)]
    return Computed(len(between), f"forward collectives between {after} and {before}: "
                                  f"{[c.name for c in between] or 'none'}")


@check("forward_collectives")
def forward_collectives(ctx: AuditContext, upto: str, output: str | None = None) -> Computed:
    """Kinds and names of the forward collectives the exact dataflow runs before op ``upto``."""
    prog = ctx.plan_for(output=output).programs[0]
    names = [s.name for s in prog]
    comms = [s for s in prog[:names.index(ctx.one_of("upto", upto, names))] if getattr(s, "forward_kind", None)]
    value = [f"{c.forward_kind}:{c.name}" for c in comms]
    return Computed(value, "exact forward dataflow: " + ", ".join(
        f"{c.forward_kind} {c.name} over {len(c.ranks)} ranks" for c in comms))


def _small_run(ctx: AuditContext, qk_mode: str | None = None, output: str | None = None,
               model: str = DEFAULT_RUN_MODEL, backward: bool = False):
    """A real distributed run (n·m local processes) of the context's partition on a small model."""
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    p = ctx.partition
    part = Partition(p.head_groups, p.dim_segments, qk_mode or p.qk_mode, output or p.output)
    return ctx.cached(("run", part, model, backward),
                      lambda: launch_local(RunSpec(load_model(model), part, backward=backward, warmup=1)))


@check("dataflow_error")
def dataflow_error(ctx: AuditContext, qk_mode: str, output: str | None = None,
                   model: str = DEFAULT_RUN_MODEL) -> Computed:
    """Run the block with this dataflow for real (one process per rank, gloo) on a small model
    and return its max relative error against the dense block."""
    r = _small_run(ctx, qk_mode, output, model)
    part = r.spec.partition
    return Computed(r.comparison.forward_error,
                    f"{qk_mode}/{part.output} on {model}, {r.world_size} processes: relative error "
                    f"{r.comparison.forward_error:.2e} vs the dense block; collectives as planned: "
                    f"{str(r.collectives_match).lower()}")


@check("monitoring_points")
def monitoring_points(ctx: AuditContext, model: str = DEFAULT_RUN_MODEL) -> Computed:
    """What a real run of the partition records: per-op time (and achieved FLOP/s), bytes and
    time per collective, peak memory per rank, end-to-end latency."""
    r = _small_run(ctx, model=model, backward=True)
    plan = ctx.plan_for(model=model)
    busy = sum(sum(v) for v in r.op_seconds().values()) / r.world_size
    flops = plan.rank_flops(0) / busy
    coll = r.collective_summary()
    value = {"op_seconds": len(r.op_seconds()), "collectives": len(coll),
             "peak_memory_ranks": len(r.peak_memory_bytes), "wall_s": round(r.timings["wall_s"], 2)}
    return Computed(value, f"{len(r.op_seconds())} ops timed on each of {r.world_size} ranks "
                           f"({si(flops, 'FLOP/s')} achieved in forward ops), {len(coll)} collectives with bytes "
                           f"and times, peak memory of {len(r.peak_memory_bytes)} ranks, wall "
                           f"{r.timings['wall_s']:.2f} s")


@check("matmuls")
def matmuls(ctx: AuditContext, upto: str | None = None, after: str | None = None) -> Computed:
    """The matrix products each GPU runs in a part of the block (rank 0, program order)."""
    ops = ctx.plan.rank_ops(0)
    names = [o.name for o in ops]
    lo = names.index(ctx.one_of("after", after, names)) + 1 if after else 0
    hi = names.index(ctx.one_of("upto", upto, names)) if upto else len(names)
    value = [o.name for o in ops[lo:hi] if o.kind == "matmul"]
    return Computed(value, f"matrix products on every GPU: {', '.join(value)}")


@check("least_traffic_partition")
def least_traffic_partition(ctx: AuditContext) -> Computed:
    """The factorisation of the same GPU count whose rank sends the fewest bytes per forward."""
    p = ctx.partition
    sent = {}
    for cand in valid_partitions(ctx.model, p.world_size, qk_mode=p.qk_mode, output=p.output):
        plan = ctx.plan_for(head_groups=cand.head_groups, dim_segments=cand.dim_segments)
        sent[f"{cand.head_groups}x{cand.dim_segments}"] = sum(
            c.bytes_sent_per_rank for c in plan.collectives_for_rank(0, "forward"))
    best = min(sent, key=sent.get)
    return Computed(best, "bytes sent per GPU per forward: " + ", ".join(f"{k} {si(v, 'B')}" for k, v in sent.items()))
