"""The text ``plan`` and ``run`` print for the Plans that :mod:`helixlib.views.reports` does not
describe: KV-shard partitions, decode steps, grouped-query attention. The same tables, with the
columns such a Plan has (KV heads, KV positions and bytes per rank, the load balance of a causal
mask, the per-step view of a decode loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from helixlib.core.units import si, table
from helixlib.plan import Plan
from helixlib.plan.kv_summary import kv_summary
from helixlib.views import tables

if TYPE_CHECKING:
    from helixlib.runtime.run import RunResult

KV_RANK_HEADER = ["rank", "g", "j", "heads", "combines", "KV pos.", "KV bytes", "matmul", "causal attn",
                  "memory"]
HD_RANK_HEADER = ["rank", "g", "s", "heads", "KV heads", "dim slice", "KV bytes", "matmul", "memory"]


def needs_kv_report(plan: Plan) -> bool:
    """What the classic report cannot show: KV shards, decode, GQA or other head dims or SwiGLU."""
    m = plan.model
    return (plan.partition.kv or plan.phase == "decode" or m.grouped or m.mlp != "gelu"
            or m.head_dim_v != m.head_dim_qk)


def model_line(plan: Plan) -> str:
    m = plan.model
    line = (f"{m.name}: D={m.hidden} H={m.heads} K={m.kv_heads} d_qk={m.head_dim_qk} d_v={m.head_dim_v} "
            f"F={m.mlp_hidden} ({m.mlp}) B={m.batch} {m.dtype}")
    if plan.phase == "decode":
        return line + f"; decode step {plan.step}: 1 new token per sequence after {plan.context} cached"
    return line + f"; prefill of L={m.seq_len}" + (" (causal)" if m.causal else "")


def partition_line(plan: Plan) -> str:
    p = plan.partition
    if p.kv:
        return (f"partition: n={p.head_groups} head groups x p={p.kv_shards} KV shards = {plan.world_size} ranks; "
                f"KV positions in blocks of {p.tokens_per_block}, {p.kv_placement}"
                + (f"; HOP-B over {p.hop_b} batch chunks" if p.hop_b > 1 else ""))
    return (f"partition: n={p.head_groups} head groups x m={p.dim_segments} dim segments = {plan.world_size} ranks; "
            f"qk_mode={p.qk_mode}, output={p.output}")


def rank_rows(plan: Plan) -> tuple[list[list], list[str]]:
    """One row per rank, and the header (KV shards and head-dim segments differ)."""
    kv = kv_summary(plan)
    rows = []
    for sh, mem in zip(plan.shards, plan.memory()):
        r = sh.rank
        common = [si(plan.rank_flops(r, "matmul"), "FLOP")]
        if plan.partition.kv:
            rows.append([r, sh.head_group, sh.kv_shard, f"{sh.heads[0]}-{sh.heads[1] - 1}",
                         f"{sh.out_heads[0]}-{sh.out_heads[1] - 1}", f"{sh.kv_length:,}",
                         si(kv["kv_bytes_per_rank"][r], "B"), *common,
                         si(kv["causal_attention_flops_per_rank"][r], "FLOP"), si(mem.total_bytes, "B")])
        else:
            rows.append([r, sh.head_group, sh.dim_segment, f"{sh.heads[0]}-{sh.heads[1] - 1}",
                         f"{sh.kv_heads[0]}-{sh.kv_heads[1] - 1}", f"[{sh.dim_slice[0]}, {sh.dim_slice[1]})",
                         si(kv["kv_bytes_per_rank"][r], "B"), *common, si(mem.total_bytes, "B")])
    return rows, KV_RANK_HEADER if plan.partition.kv else HD_RANK_HEADER


def kv_lines(plan: Plan) -> list[str]:
    """KV copies, and for KV shards the causal load balance."""
    kv = kv_summary(plan)
    lines = [f"KV bytes on all ranks: {si(sum(kv['kv_bytes_per_rank']), 'B')} = {kv['copies']:g} x the unique "
             f"{si(kv['unique_kv_bytes'], 'B')} (duplicated: {si(kv['duplicated_kv_bytes'], 'B')})"]
    if plan.partition.kv:
        lines.append(f"causal attention FLOPs per rank: max / mean = {kv['imbalance']:.3f} "
                     f"({plan.partition.kv_placement}; the ops above count the full masked rectangle)")
    return lines


def plan_report(plan: Plan, checks) -> str:
    """The plan as text: model and partition, one row per rank, KV lines, collectives, checks."""
    rows, header = rank_rows(plan)
    lines = [model_line(plan), partition_line(plan) + "\n", table(rows, header) + "\n", *kv_lines(plan), "",
             table(tables.collective_rows(plan), tables.COLLECTIVE_HEADER) + "\n"]
    lines += [f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks]
    return "\n".join(lines)


def run_headline(r: RunResult) -> str:
    """The first line of a run report for a KV-shard or decode run."""
    s, part = r.spec, r.spec.partition
    what = (f"decode, {s.steps} steps" if s.phase == "decode"
            else "forward+backward" if s.backward else "forward")
    hop_b = f", HOP-B x{part.hop_b}" if part.hop_b > 1 else ""
    variant = (f"KV shards {part.kv_placement}/{part.tokens_per_block}{hop_b}" if part.kv
               else f"{part.qk_mode}/{part.output}")
    return (f"{s.model.name} {part.label} {variant} {s.model.dtype}: {r.world_size} ranks, {r.backend} on "
            f"{r.device}, {what}")


def decode_lines(r: RunResult) -> list[str]:
    """Per step: the slowest rank's mean step time, and the All-to-All's blocked (exposed) time."""
    steps = r.spec.steps
    step = max(t.timings.get("forward_s", 0.0) for t in r.traces)
    a2a = max(sum(c.seconds for c in t.collectives if c.kind == "all_to_all") for t in r.traces) / steps
    return [f"decode: {steps} steps, slowest rank {step * 1e3:.2f} ms per step; All-to-All blocked "
            f"{a2a * 1e3:.2f} ms per step (slowest rank)"]


DECODE_STEP_HEADER = ["step", "cached positions"]


def decode_step_rows(runs: dict[str, RunResult]) -> tuple[list[list], list[str]]:
    """One row per decode step of same-length runs: the positions cached before it, then per run the
    bytes every rank's recorded collectives moved in that step and what the step's Plan says they move."""
    from helixlib.plan import decode_plans

    first = next(iter(runs.values())).spec
    header = DECODE_STEP_HEADER + [f"{label} {what}" for label in runs for what in ("measured", "Plan")]
    per_run = []
    for r in runs.values():
        plans = decode_plans(r.spec.model, r.spec.partition, r.spec.steps)
        measured = [sum(c.bytes for tr in r.traces for c in tr.collectives if c.step == t) for t in range(len(plans))]
        planned = [sum(c.bytes * len(c.ranks) for c in p.collectives) for p in plans]
        per_run.append((measured, planned))
    rows = [[t, first.model.seq_len + t] + [si(v, "B") for m, p in per_run for v in (m[t], p[t])]
            for t in range(first.steps)]
    return rows, header
