"""Checks a claims file can call that need the estimator, the design space, the DAG or the
plan's runtime script (``check:`` names in ``data/plan_claims.yaml``)."""

from __future__ import annotations

from helixlib.audit.context import AuditContext
from helixlib.audit.registry import Computed, check
from helixlib.core.units import si
from helixlib.plan import OutputMode


def _estimate(ctx: AuditContext, head_groups=None, dim_segments=None, **options):
    """The estimator's result for the context's deployment (or another partition), memoised."""
    from helixlib.estimate.estimator import estimate
    from helixlib.estimate.hardware import load_cluster

    key = ("estimate", head_groups, dim_segments, tuple(sorted(options.items())))
    return ctx.cached(key, lambda: estimate(ctx.plan_for(head_groups=head_groups, dim_segments=dim_segments),
                                            load_cluster(ctx.hardware), **options))


@check("communication_share")
def communication_share(ctx: AuditContext, training: bool = False) -> Computed:
    """Communication time over compute time for one layer (no overlap), from the estimator."""
    est = _estimate(ctx, training=training)
    pl, share = est.per_layer, est.communication_share
    value = share["communication_over_compute"]
    return Computed(value, f"one layer on {est.cluster.name}, output={ctx.partition.output}: compute "
                           f"{pl['compute']:.3g} s, communication "
                           f"{pl['communication']:.3g} s = {value:.0%} of compute "
                           f"({share['all_of_no_overlap_time']:.0%} of the no-overlap time)")


@check("speedup")
def speedup(ctx: AuditContext) -> Computed:
    """Forward time of the block on one GPU of the cluster over its time on the plan's G GPUs
    (dataflow estimate; the one-GPU case is priced even though it would not fit)."""
    one = _estimate(ctx, head_groups=1, dim_segments=1).per_layer["time_dataflow"]
    many = _estimate(ctx).per_layer["time_dataflow"]
    compute_only = (_estimate(ctx, head_groups=1, dim_segments=1).per_layer["compute"]
                    / _estimate(ctx).per_layer["compute"])
    return Computed(one / many, f"output={ctx.partition.output}: one GPU {one:.3g} s, {ctx.partition.world_size} "
                                f"GPUs {many:.3g} s per layer: "
                                f"x{one / many:.1f} (compute alone: x{compute_only:.1f})")


@check("memory_reduction")
def memory_reduction(ctx: AuditContext, training: bool = False) -> Computed:
    """Memory of the whole block on one GPU over memory per GPU of the plan (estimator's model)."""
    one = _estimate(ctx, head_groups=1, dim_segments=1, training=training).memory.total
    per = _estimate(ctx, training=training).memory
    return Computed(float(one / per.total), f"output={ctx.partition.output}: one GPU {si(float(one), 'B')}, per GPU "
                                             f"of the plan "
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

    steps = corrections(ctx.plan_for(output=OutputMode.ALLREDUCE), load_cluster(ctx.hardware))
    return Computed(steps[-1].total, "output=allreduce (the script's own terms): forward of one layer over the "
                                     "whole batch: "
                    + " -> ".join(f"{s.name} {s.total:.3g} s" for s in steps))


@check("dag")
def dag_checks(ctx: AuditContext, names: list[str], layers: int = 1) -> Computed:
    """The DAG built from the plan (helixlib.dag.graph), its named checks (helixlib.dag.checks)."""
    from helixlib.dag.checks import run_dag_checks
    from helixlib.dag.graph import build_dag

    checks = ctx.cached(("dag", layers),
                        lambda: {c.name: c for c in run_dag_checks(build_dag(ctx.plan, layers=layers), ctx.plan)})
    results = [checks[n] for n in names]
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
