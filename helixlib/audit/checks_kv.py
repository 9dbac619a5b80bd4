"""The audit check that compares the deployment plan's partition with the other second level:
the best KV-sequence-shard partition (Helix Parallelism, Bhatia et al., arXiv 2507.07120) of the
same GPUs, by what the Plans say each GPU sends or holds."""

from __future__ import annotations

from helixlib.audit.context import AuditContext
from helixlib.audit.registry import Computed, check
from helixlib.core.units import si
from helixlib.plan import Plan, StepPhase, build_plan
from helixlib.plan.partition import valid_partitions

METRICS = ("bytes_sent", "memory")


def per_gpu(plan: Plan, metric: str) -> int:
    """The busiest GPU's forward bytes sent (``bytes_sent``: nccl-tests' bus factor times the buffer,
    summed over the step's forward collectives) or its memory for one block (``memory``)."""
    if metric == "memory":
        return max(m.total_bytes for m in plan.memory())
    return max(sum(c.bytes_sent_per_rank for c in plan.collectives_for_rank(r, "forward"))
               for r in range(plan.world_size))


@check("kv_alternative")
def kv_alternative(ctx: AuditContext, phase: str = StepPhase.PREFILL, metric: str = "bytes_sent") -> Computed:
    """The n x p KV-shard partition (p > 1) of the same GPU count with the least ``metric`` per GPU
    in one step of ``phase`` (prefill: the context's sequence; decode: one token after it), and
    how the deployment's own partition compares."""
    phase = ctx.one_of("phase", phase, tuple(StepPhase))
    metric = ctx.one_of("metric", metric, METRICS)
    m = ctx.model
    own = ctx.cached(("kv_alt", ctx.partition, phase), lambda: build_plan(m, ctx.partition, phase=phase))
    figures = {}
    for part in valid_partitions(m, ctx.partition.world_size, kv=True):
        plan = ctx.cached(("kv_alt", part, phase), lambda part=part: build_plan(m, part, phase=phase))
        figures[part.label] = per_gpu(plan, metric)
    best = min(figures, key=figures.get)
    mine = per_gpu(own, metric)
    return Computed(best, f"{metric.replace('_', ' ')} per GPU, one {phase} step of {m.name}: deployment "
                          f"{ctx.partition.label} {si(mine, 'B')}; KV shards " + ", ".join(
                              f"{k} {si(v, 'B')}" for k, v in figures.items())
                    + f"; best {best}: {mine / figures[best]:.3g}x less than the deployment's")
