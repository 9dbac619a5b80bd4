"""The named computations a claims file can call (``check:`` in ``data/plan_claims.yaml``).

Each takes the :class:`AuditContext` and the claim's ``args`` and returns a
:class:`~helixlib.audit.Computed` (value + a one-line account). They only read helixlib's
results — the Plan, its checks, the simulation — never a typed number.
"""

from __future__ import annotations

from functools import cached_property

from .audit import Computed
from .config import load_model
from .partition import Partition, valid_partitions
from .plan import Plan, build_plan
from .units import si

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
        from .checks import run_checks
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
    """The plan's structural checks (helixlib.checks) by name; true when all pass."""
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


@check("dataflow_error")
def dataflow_error(ctx: AuditContext, qk_mode: str, output: str | None = None, model: str = "helix-tiny") -> Computed:
    """Run the block with this dataflow on a small model (all ranks in one process, real
    tensors) and return its max relative error against the dense block."""
    from .simulate import simulate

    p = ctx.partition
    plan = build_plan(load_model(model), Partition(p.head_groups, p.dim_segments, qk_mode, output or p.output))
    c = simulate(plan)
    return Computed(c.forward_error, f"{qk_mode}/{plan.partition.output} on {model} "
                                     f"({p.head_groups}x{p.dim_segments}): relative error {c.forward_error:.2e} vs dense")


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
