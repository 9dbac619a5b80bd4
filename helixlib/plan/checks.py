"""The plan's checklists, computed from the Plan rather than ticked by hand.

Each check returns a :class:`CheckResult` (name, ok, detail). ``run_checks(plan)``
runs them all; the deployment plan's "Dimensional Alignment" and "GPU Assignment"
checklists map onto these names.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from helixlib.plan.build import CommPoint, Op, Plan
from helixlib.plan.names import OutputMode


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": bool(self.ok), "detail": self.detail}


def check_rank_layout(plan: Plan) -> CheckResult:
    """rank = g·m + s, i.e. the layout of init_device_mesh(dev, (n, m))."""
    n, m = plan.partition.head_groups, plan.partition.dim_segments
    mesh = np.arange(plan.world_size).reshape(n, m)
    bad = [s.rank for s in plan.shards if mesh[s.head_group, s.dim_segment] != s.rank]
    return CheckResult("rank_layout_row_major", not bad,
                       f"{n}x{m} mesh, rank = g*{m} + s" + (f"; wrong for ranks {bad}" if bad else ""))


def check_one_partition_per_rank(plan: Plan) -> CheckResult:
    """Every rank holds exactly one (head_group, dim_segment) and every pair has a rank."""
    pairs = Counter((s.head_group, s.dim_segment) for s in plan.shards)
    n, m = plan.partition.head_groups, plan.partition.dim_segments
    expected = {(g, s) for g in range(n) for s in range(m)}
    ranks = sorted(s.rank for s in plan.shards)
    ok = set(pairs) == expected and all(c == 1 for c in pairs.values()) and ranks == list(range(plan.world_size))
    return CheckResult("one_partition_per_rank", ok,
                       f"{len(pairs)} partitions on {plan.world_size} ranks (need {n}x{m} = {n * m}, each once)")


def check_head_dim_owned_once(plan: Plan) -> CheckResult:
    """Every (head, column of d) is owned by exactly one rank."""
    H, d = plan.model.heads, plan.model.head_dim
    owners = np.zeros((H, d), dtype=np.int64)
    for s in plan.shards:
        owners[s.heads[0]:s.heads[1], s.dim_slice[0]:s.dim_slice[1]] += 1
    lo, hi = int(owners.min()), int(owners.max())
    return CheckResult("every_head_dim_owned_once", lo == hi == 1,
                       f"{H} heads x {d} columns; owners per cell between {lo} and {hi}")


def _coverage(ranges_per_rank: list[list[tuple[int, int]]], size: int) -> tuple[int, int]:
    count = np.zeros(size, dtype=np.int64)
    for ranges in ranges_per_rank:
        for lo, hi in ranges:
            count[lo:hi] += 1
    return int(count.min()), int(count.max())


def check_weights_partitioned(plan: Plan) -> CheckResult:
    """Column/row slices of Wq/Wk/Wv/Wo, W1/W2 (and Wo columns for concat) cover each index once."""
    D, F = plan.model.hidden, plan.model.mlp_hidden
    parts = {
        "Wq/Wk/Wv columns, Wo rows": (_coverage([s.qkv_ranges for s in plan.shards], D), D),
        "W1 columns, W2 rows": (_coverage([[s.mlp_slice] for s in plan.shards], F), F),
    }
    if plan.partition.output == OutputMode.CONCAT:
        parts["Wo columns"] = (_coverage([[s.out_columns] for s in plan.shards], D), D)
    bad = [k for k, ((lo, hi), _) in parts.items() if not lo == hi == 1]
    detail = "; ".join(f"{k}: {size} indices, owners {lo}..{hi}" for k, ((lo, hi), size) in parts.items())
    return CheckResult("weights_partitioned_exactly", not bad, detail)


def check_local_dims_sum(plan: Plan) -> CheckResult:
    """Local widths add up to the global ones: Σ d_s = d per group, Σ heads = H, Σ F/G = F."""
    m, D = plan.model, plan.model.hidden
    seg = sum(s.dim_slice[1] - s.dim_slice[0] for s in plan.shards if s.head_group == 0)
    heads = sum(s.heads[1] - s.heads[0] for s in plan.shards if s.dim_segment == 0)
    qkv = sum(math.prod(plan.op(r, "q_proj").output_shape[2:]) for r in range(plan.world_size))
    mlp = sum(plan.op(r, "fc1").output_shape[2] for r in range(plan.world_size))
    ok = seg == m.head_dim and heads == m.heads and qkv == D and mlp == m.mlp_hidden
    return CheckResult("local_dims_sum_to_global", ok,
                       f"sum d_s in a group = {seg} (d = {m.head_dim}); heads over groups = {heads} (H = {m.heads}); "
                       f"Q widths over ranks = {qkv} (D = {D}); FC1 widths = {mlp} (F = {m.mlp_hidden})")


def check_concat_alignment(plan: Plan) -> CheckResult:
    """Every all-gather's inputs, concatenated along its dim, give exactly its output shape."""
    problems, n_checked = [], 0
    for r, prog in enumerate(plan.programs):
        for i, c in enumerate(prog):
            if not isinstance(c, CommPoint) or c.forward_kind != "all_gather":
                continue
            n_checked += 1
            # every rank runs the same program, so step i is the same gather on each peer
            pieces = [plan.programs[peer][i].input_shape for peer in c.ranks]
            rest = {tuple(x for j, x in enumerate(s) if j != c.dim) for s in pieces}
            cat = list(pieces[0])
            cat[c.dim] = sum(s[c.dim] for s in pieces)
            if len(rest) != 1 or tuple(cat) != c.output_shape:
                problems.append(f"rank {r} {c.name}: pieces {[list(s) for s in pieces]} -> {list(c.output_shape)}")
    detail = f"{n_checked} gathers checked" + (": " + "; ".join(problems[:3]) if problems else ", all aligned")
    return CheckResult("no_concat_mismatch", not problems, detail)


def check_shapes_chain(plan: Plan) -> CheckResult:
    """Each step's input shapes equal the shapes its producers gave (on the same rank)."""
    problems = []
    for r, prog in enumerate(plan.programs):
        shapes = {"x": (plan.model.batch, plan.model.seq_len, plan.model.hidden)}
        for step in prog:
            ins = step.inputs if isinstance(step, Op) else (step.input,)
            got = step.input_shapes[: len(ins)] if isinstance(step, Op) else (step.input_shape,)
            for t, s in zip(ins, got):
                if shapes.get(t) != s:
                    problems.append(f"rank {r} {step.name}: {t} is {shapes.get(t)}, used as {s}")
            shapes[step.output] = step.output_shape
    return CheckResult("producer_consumer_shapes_match", not problems,
                       f"{sum(len(p) for p in plan.programs)} steps"
                       + ("; " + "; ".join(problems[:3]) if problems else ""))


def check_batch_sequence_preserved(plan: Plan) -> CheckResult:
    """Every activation keeps B first and L in a sequence position; the block maps [B,L,D] to [B,L,D]."""
    B, L, D = plan.model.batch, plan.model.seq_len, plan.model.hidden
    problems = []
    for r, prog in enumerate(plan.programs):
        for step in prog:
            s = step.output_shape
            if s[0] != B or L not in s[1:]:
                problems.append(f"rank {r} {step.name}: {list(s)}")
        last = prog[-1]
        if last.output_shape != (B, L, D):
            problems.append(f"rank {r} output {list(last.output_shape)}")
    return CheckResult("batch_and_sequence_preserved", not problems,
                       f"B = {B}, L = {L} on every tensor" if not problems else "; ".join(problems[:3]))


def check_collective_groups(plan: Plan) -> CheckResult:
    """Every collective runs on a DeviceMesh group: a dim_segment row, a head_group column, or the world."""
    part = plan.partition
    legal = {dim: {tuple(g) for g in part.groups(dim)} for dim in ("dim_segment", "head_group", "world")}
    bad = [c.name for c in plan.collectives if c.ranks not in legal[c.group]]
    return CheckResult("collectives_on_mesh_groups", not bad,
                       f"{len(plan.collectives)} collectives"
                       + (f"; off-mesh: {bad[:3]}" if bad else ", all on mesh groups"))


ALL_CHECKS = (
    check_rank_layout,
    check_one_partition_per_rank,
    check_head_dim_owned_once,
    check_weights_partitioned,
    check_local_dims_sum,
    check_concat_alignment,
    check_shapes_chain,
    check_batch_sequence_preserved,
    check_collective_groups,
)


def run_checks(plan: Plan) -> list[CheckResult]:
    """All structural checks of the plan, in a fixed order."""
    return [check(plan) for check in ALL_CHECKS]
