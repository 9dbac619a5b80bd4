"""The named computations a claims file can call (``check:`` in ``data/plan_claims.yaml``).

Each takes the :class:`AuditContext` and the claim's ``args`` and returns a
:class:`~helixlib.audit.claims.Computed` (value + a one-line account). They only read helixlib's
results — the Plan, its checks, the simulation — never a typed number.
"""

from __future__ import annotations

from functools import cached_property

from helixlib.audit.claims import Computed
from helixlib.core.units import si
from helixlib.plan.build import Plan, build_plan
from helixlib.plan.model import load_model
from helixlib.plan.partition import Partition, valid_partitions

CHECKS: dict = {}


def check(name: str):
    """Register a computation under ``name``."""
    def register(fn):
        CHECKS[name] = fn
        return fn
    return register


class AuditContext:
    """The deployment under audit: model, partition, variants, hardware (from the claims
    file's ``context``), with the expensive results computed once, on first use."""

    def __init__(self, context: dict):
        self.context = dict(context)
        self.model = load_model(context.get("model", "helix-70b"))
        self.partition = Partition(context.get("head_groups", 4), context.get("dim_segments", 4),
                                   context.get("qk_mode", "reduce_scores"), context.get("output", "concat"))
        self.hardware = context.get("hardware", "dgx-a100")
        self._plans: dict[tuple, Plan] = {}

    def plan_for(self, qk_mode: str | None = None, output: str | None = None, head_groups: int | None = None,
                 dim_segments: int | None = None, model=None) -> Plan:
        p = self.partition
        key = (qk_mode or p.qk_mode, output or p.output, head_groups or p.head_groups, dim_segments or p.dim_segments,
               model or self.model.name)
        if key not in self._plans:
            m = self.model if model is None else load_model(model)
            self._plans[key] = build_plan(m, Partition(key[2], key[3], key[0], key[1]))
        return self._plans[key]

    @cached_property
    def plan(self) -> Plan:
        return self.plan_for()

    @cached_property
    def checks(self):
        from helixlib.plan.checks import run_checks
        return {c.name: c for c in run_checks(self.plan)}


@check("model")
def model_value(ctx: AuditContext, field: str) -> Computed:
    """A model dimension, or a derived one: mlp_ratio (F/D), head_dim, params."""
    m = ctx.model
    derived = {"mlp_ratio": m.mlp_hidden / m.hidden, "head_dim": m.head_dim, "params": m.params,
               "params_per_block": m.params_per_block}
    value = derived[field] if field in derived else getattr(m, field)
    extra = f" ({m.layers} blocks of {m.params_per_block:,})" if field == "params" else ""
    return Computed(value, f"{field} = {value:,}{extra}" if not isinstance(value, float) else f"{field} = {value:g}")


@check("head_group")
def head_group(ctx: AuditContext, group: int) -> Computed:
    """The heads a head group owns and the GPUs (ranks) it is on."""
    shards = [s for s in ctx.plan.shards if s.head_group == group]
    heads = sorted({h for s in shards for h in range(*s.heads)})
    gpus = [s.rank for s in shards]
    return Computed({"heads": heads, "gpus": gpus}, f"head group {group}: heads {heads} on GPUs {gpus}")


@check("dim_segment")
def dim_segment(ctx: AuditContext, segment: int) -> Computed:
    """The width of a dim segment and the offset of its GPU inside the group (rank - g·m)."""
    m = ctx.partition.dim_segments
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
    prog = ctx.plan_for(qk_mode, output).programs[rank]
    s = next(x for x in prog if x.name == step)
    if part == "output":
        dims = s.output_shape
    elif part == "input":
        dims = s.input_shapes[index] if hasattr(s, "input_shapes") else s.input_shape
    else:
        dims = s.params[index][1]
    dims = list(dims)
    shown = [dims[i] for i in layout] if layout else dims
    if merge_heads:
        shown = shown[:-2] + [shown[-2] * shown[-1]]
    note = f" (viewed in the claim's layout; the Plan's shape is {dims})" if layout or merge_heads else ""
    return Computed(shown, f"{step} {part}{'' if part == 'output' else f' {index}'} on rank {rank}: {shown}{note}")


@check("flops")
def flops(ctx: AuditContext, ops: list[str], scope: str = "rank", rank: int = 0) -> Computed:
    """FLOPs (2 per multiply-add) of the named ops on one rank, or summed over all ranks."""
    plan = ctx.plan
    ranks = [rank] if scope == "rank" else range(plan.world_size)
    total = sum(plan.op(r, name).flops for r in ranks for name in ops)
    where = f"rank {rank}" if scope == "rank" else f"all {plan.world_size} ranks"
    return Computed(total, f"{' + '.join(ops)} on {where}: {si(total, 'FLOP')} (2 FLOPs per multiply-add)")


@check("structural")
def structural(ctx: AuditContext, names: list[str]) -> Computed:
    """The plan's structural checks (helixlib.plan.checks) by name; true when all pass."""
    results = [ctx.checks[n] for n in names]
    return Computed(all(r.ok for r in results), "; ".join(f"{r.name}: {'ok' if r.ok else 'FAIL'} ({r.detail})"
                                                          for r in results))


@check("balance")
def balance(ctx: AuditContext, quantity: str = "flops") -> Computed:
    """max / min over ranks of FLOPs or memory (1.0 = perfectly balanced)."""
    plan = ctx.plan
    if quantity == "flops":
        per = [plan.rank_flops(r) for r in range(plan.world_size)]
    else:
        per = [m.total_bytes for m in plan.memory()]
    return Computed(max(per) / min(per), f"{quantity} per rank between {si(min(per))} and {si(max(per))}")


@check("group_size")
def group_size(ctx: AuditContext, collective: str) -> Computed:
    """Ranks in each group a collective runs on, and how many such groups run at once."""
    cs = [c for c in ctx.plan.collectives if c.name == collective]
    sizes = sorted({len(c.ranks) for c in cs})
    value = sizes[0] if len(sizes) == 1 else sizes
    return Computed(value, f"{collective}: {len(cs)} groups of {value} ranks ({', '.join(str(list(c.ranks)) for c in cs[:4])})")


@check("collectives_between")
def collectives_between(ctx: AuditContext, after: str, before: str, output: str | None = None) -> Computed:
    """Number of forward collectives the exact dataflow needs between two ops of rank 0."""
    prog = ctx.plan_for(output=output).programs[0]
    names = [s.name for s in prog]
    between = [s for s in prog[names.index(after) + 1:names.index(before)] if getattr(s, "forward_kind", None)]
    return Computed(len(between), f"forward collectives between {after} and {before}: "
                                  f"{[c.name for c in between] or 'none'}")


@check("forward_collectives")
def forward_collectives(ctx: AuditContext, upto: str, output: str | None = None) -> Computed:
    """Kinds and names of the forward collectives the exact dataflow runs before op ``upto``."""
    prog = ctx.plan_for(output=output).programs[0]
    names = [s.name for s in prog]
    comms = [s for s in prog[:names.index(upto)] if getattr(s, "forward_kind", None)]
    value = [f"{c.forward_kind}:{c.name}" for c in comms]
    return Computed(value, "exact forward dataflow: " + ", ".join(
        f"{c.forward_kind} {c.name} over {len(c.ranks)} ranks" for c in comms))


def _small_run(ctx: AuditContext, qk_mode: str | None = None, output: str | None = None,
               model: str = "helix-tiny", backward: bool = False):
    """A real distributed run (n·m local processes) of the context's partition on a small model."""
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    p = ctx.partition
    key = ("run", qk_mode, output, model, backward)
    if key not in ctx._plans:
        part = Partition(p.head_groups, p.dim_segments, qk_mode or p.qk_mode, output or p.output)
        ctx._plans[key] = launch_local(RunSpec(load_model(model), part, backward=backward, warmup=1))
    return ctx._plans[key]


@check("dataflow_error")
def dataflow_error(ctx: AuditContext, qk_mode: str, output: str | None = None, model: str = "helix-tiny") -> Computed:
    """Run the block with this dataflow for real (one process per rank, gloo) on a small model
    and return its max relative error against the dense block."""
    r = _small_run(ctx, qk_mode, output, model)
    part = r.spec["partition"]
    return Computed(r.comparison.forward_error,
                    f"{qk_mode}/{part['output']} on {model}, {r.world_size} processes: relative error "
                    f"{r.comparison.forward_error:.2e} vs the dense block; collectives as planned: "
                    f"{str(r.collectives_match).lower()}")


@check("monitoring_points")
def monitoring_points(ctx: AuditContext, model: str = "helix-tiny") -> Computed:
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
    lo = names.index(after) + 1 if after else 0
    hi = names.index(upto) if upto else len(names)
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


# ---- checks that need the estimator, the DAG or the seed script ---------------------------


def _estimate(ctx: AuditContext, head_groups=None, dim_segments=None, **options):
    """The estimator's result for the context's deployment (or another partition), memoised."""
    from helixlib.estimate.estimator import estimate
    from helixlib.estimate.hardware import load_cluster

    key = ("estimate", head_groups, dim_segments, tuple(sorted(options.items())))
    if key not in ctx._plans:
        ctx._plans[key] = estimate(ctx.plan_for(head_groups=head_groups, dim_segments=dim_segments),
                                   load_cluster(ctx.hardware), **options)
    return ctx._plans[key]


@check("communication_share")
def communication_share(ctx: AuditContext, training: bool = False) -> Computed:
    """Communication time over compute time for one layer (no overlap), from the estimator."""
    est = _estimate(ctx, training=training)
    pl, share = est.per_layer, est.communication_share
    value = share["communication_over_compute"]
    return Computed(value, f"one layer on {est.cluster.name}: compute {pl['compute']:.3g} s, communication "
                           f"{pl['communication']:.3g} s = {value:.0%} of compute "
                           f"({share['all_of_no_overlap_time']:.0%} of the no-overlap time)")


@check("speedup")
def speedup(ctx: AuditContext) -> Computed:
    """Forward time of the block on one GPU of the cluster over its time on the plan's G GPUs
    (dataflow estimate; the one-GPU case is priced even though it would not fit)."""
    one = _estimate(ctx, head_groups=1, dim_segments=1).per_layer["time_dataflow"]
    many = _estimate(ctx).per_layer["time_dataflow"]
    compute_only = _estimate(ctx, head_groups=1, dim_segments=1).per_layer["compute"] / _estimate(ctx).per_layer["compute"]
    return Computed(one / many, f"one GPU {one:.3g} s, {ctx.partition.world_size} GPUs {many:.3g} s per layer: "
                                f"x{one / many:.1f} (compute alone: x{compute_only:.1f})")


@check("memory_reduction")
def memory_reduction(ctx: AuditContext, training: bool = False) -> Computed:
    """Memory of the whole block on one GPU over memory per GPU of the plan (estimator's model)."""
    one = _estimate(ctx, head_groups=1, dim_segments=1, training=training).memory.total
    per = _estimate(ctx, training=training).memory
    return Computed(float(one / per.total), f"one GPU {si(float(one), 'B')}, per GPU of the plan "
                                             f"{si(float(per.total), 'B')}: x{float(one / per.total):.1f} less")


@check("memory_vs_capacity")
def memory_vs_capacity(ctx: AuditContext, training: bool = False) -> Computed:
    """Memory per GPU over the device's memory (> 1: does not fit), and the largest micro-batch that does."""
    est = _estimate(ctx, training=training)
    mem = est.memory
    ratio = float(mem.total / mem.capacity)
    mb = est.largest_micro_batch
    fit = f"largest micro-batch that fits: {mb}" if mb else "no micro-batch fits"
    return Computed(ratio, f"{'training' if training else 'forward'} at B = {ctx.model.batch}: "
                           f"{si(float(mem.total), 'B')} per GPU vs {si(mem.capacity, 'B')} ({ratio:.1f}x); {fit}")


@check("comm_buffers")
def comm_buffers(ctx: AuditContext) -> Computed:
    """The largest message one GPU sends or receives in one forward, and its share of device memory."""
    est = _estimate(ctx)
    big = max((c for c in ctx.plan.collectives_for_rank(0, "forward")), key=lambda c: c.bytes)
    share = big.bytes / est.cluster.device.memory_bytes
    return Computed(big.bytes, f"{big.name}: {si(big.bytes, 'B')} per call = {share:.1f}x the "
                               f"{si(est.cluster.device.memory_bytes, 'B')} of one {est.cluster.device.name}")


@check("bottleneck")
def bottleneck(ctx: AuditContext) -> Computed:
    """The single largest term of a layer's time: an op's compute or a collective (by kind)."""
    est = _estimate(ctx)
    rows = est.breakdown()
    name, comp, comm = max(rows, key=lambda r: r[1] + r[2])
    kinds = {r["name"].removesuffix(".backward"): r["kind"] for r in est.collective_rows()}
    value = kinds.get(name, "compute")
    return Computed(value, f"largest term: {name} ({'compute' if comp else kinds.get(name)}, "
                           f"{comp + comm:.3g} s per layer); communication is "
                           f"{est.communication_share['communication_over_compute']:.0%} of compute")


@check("best_strategy")
def best_strategy(ctx: AuditContext) -> Computed:
    """The fastest strategy that fits at the plan's settings (design space, same GPUs and
    hardware, micro-batch 1), and how much faster it is than the plan's partition."""
    from helixlib.estimate.design_space import best, evaluate, grid, labels

    p = ctx.partition
    table = grid(models=(ctx.model,), hardware=(ctx.hardware,), world_sizes=(p.world_size,))
    res = evaluate(table, models={ctx.model.name: ctx.model})
    names = labels(table)
    ok = res["valid"] & res["fits"]
    i_best = min(range(len(names)), key=lambda i: res["time_dataflow"][i] if ok[i] else float("inf"))
    mine = f"helix {p.head_groups}x{p.dim_segments} {p.qk_mode}"
    i_mine = list(names).index(mine)
    ratio = res["time_dataflow"][i_mine] / res["time_dataflow"][i_best]
    top = best(table, res, ())
    return Computed(str(names[i_best]), f"fastest that fits (micro-batch 1): {names[i_best]}; {mine} is "
                                        f"{ratio:.2f}x slower; best per family: "
                                        + ", ".join(f"{t['best']}" for t in top))


@check("scaling_efficiency")
def scaling_efficiency(ctx: AuditContext, world_sizes: list[int] = (16, 32, 64)) -> Computed:
    """Strong scaling of the best helix partition: (T_16 · 16) / (T_G · G) per G (design space)."""
    from helixlib.estimate.design_space import evaluate, grid

    table = grid(models=(ctx.model,), hardware=(ctx.hardware,), world_sizes=tuple(world_sizes),
                 strategies=("helix",))
    res = evaluate(table, models={ctx.model.name: ctx.model})
    t = {}
    for G in world_sizes:
        sel = res["valid"] & (table["world_size"] == G)
        t[G] = float(res["time_dataflow"][sel].min())
    base = world_sizes[0]
    eff = {G: t[base] * base / (t[G] * G) for G in world_sizes}
    return Computed(eff, "strong-scaling efficiency of the best helix partition: "
                         + ", ".join(f"G={G}: {e:.0%}" for G, e in eff.items()))


@check("groups_in_node")
def groups_in_node(ctx: AuditContext) -> Computed:
    """Which process groups stay inside one node of the cluster (NVLink) and which cross nodes."""
    from helixlib.estimate.hardware import load_cluster

    cl = load_cluster(ctx.hardware)
    spans = {}
    for c in ctx.plan.collectives:
        spans.setdefault(c.name, set()).add(cl.nodes_spanned(c.ranks))
    inside = sorted(n for n, s in spans.items() if s == {1})
    across = sorted(n for n, s in spans.items() if s != {1})
    return Computed({"inside_node": inside, "across_nodes": across},
                    f"{cl.gpus_per_node} GPUs per node: inside a node {inside}; across nodes {across}")


@check("seed_script_output")
def seed_script_output(ctx: AuditContext) -> Computed:
    """Run the plan's runtime script as written; return what it prints."""
    from helixlib.estimate.seed_script import run_seed_script

    out = run_seed_script()
    return Computed(out, f"the script, run verbatim, prints {out!r}")


@check("corrected_runtime")
def corrected_runtime(ctx: AuditContext) -> Computed:
    """The seed script's figure after every correction (helixlib.estimate.seed_script.corrections)."""
    from helixlib.estimate.hardware import load_cluster
    from helixlib.estimate.seed_script import corrections

    steps = corrections(ctx.plan_for(output="allreduce"), load_cluster(ctx.hardware))
    return Computed(steps[-1].total, "forward of one layer over the whole batch: "
                    + " -> ".join(f"{s.name} {s.total:.3g} s" for s in steps))


@check("dag")
def dag_checks(ctx: AuditContext, names: list[str], layers: int = 1) -> Computed:
    """The DAG built from the plan (helixlib.dag.graph), its named checks (helixlib.dag.checks)."""
    from helixlib.dag.checks import run_dag_checks
    from helixlib.dag.graph import build_dag

    key = ("dag", layers)
    if key not in ctx._plans:
        ctx._plans[key] = {c.name: c for c in run_dag_checks(build_dag(ctx.plan, layers=layers), ctx.plan)}
    results = [ctx._plans[key][n] for n in names]
    return Computed(all(r.ok for r in results), "; ".join(f"{r.name}: {'ok' if r.ok else 'FAIL'} ({r.detail})"
                                                          for r in results))


@check("dag_renders")
def dag_renders(ctx: AuditContext) -> Computed:
    """Write the plan's three .dot files (helixlib.dag.files) and render them to SVG with dot."""
    import tempfile

    from helixlib.dag.files import write_dag_files

    with tempfile.TemporaryDirectory() as tmp:
        files, missing_dot = write_dag_files(ctx.plan, tmp, formats=("svg",))
        rendered = [p.name for f in files for p in f.written if p.suffix == ".svg" and p.stat().st_size > 0]
    ok = missing_dot is None and len(rendered) == len(files)
    return Computed(ok, f"{', '.join(f.name + '.dot' for f in files)} built from the plan; rendered to SVG: "
                        + (", ".join(rendered) if ok else (missing_dot or "failed").splitlines()[0]))


def deployment_summary(context: dict) -> dict:
    """What the audited deployment really costs on its hardware (forward of the whole model
    over the plan's batch, at the largest micro-batch that fits) and what the design space
    would pick instead on the same GPUs."""
    ctx = AuditContext(context)
    first = _estimate(ctx)
    b = first.largest_micro_batch
    est = _estimate(ctx, micro_batch=b) if b else first
    best_overall = best_strategy(ctx)
    from helixlib.estimate.design_space import evaluate, grid, labels

    p = ctx.partition
    table = grid(models=(ctx.model,), hardware=(ctx.hardware,), world_sizes=(p.world_size,), strategies=("helix",))
    res = evaluate(table, models={ctx.model.name: ctx.model})
    names = labels(table)
    ok = res["valid"] & res["fits"]
    i = min((j for j in range(len(names)) if ok[j]), key=lambda j: res["time_dataflow"][j])
    return {
        "hardware": est.cluster.name,
        "micro_batch": est.micro_batch,
        "fits_at_full_batch": bool(first.memory.fits),
        "memory_per_gpu_full_batch": float(first.memory.total),
        "memory_per_gpu": float(est.memory.total),
        "device_memory": float(est.cluster.device.memory_bytes),
        "forward_per_layer_s": float(est.per_layer["time_dataflow"]),
        "forward_per_model_s": float(est.per_model["time_dataflow"]),
        "communication_over_compute": float(est.communication_share["communication_over_compute"]),
        "mfu": float(est.mfu["dataflow"]),
        "best_helix_partition": str(names[i]),
        "best_strategy": best_overall.value,
        "best_strategy_detail": best_overall.detail,
    }
