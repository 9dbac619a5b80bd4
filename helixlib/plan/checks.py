"""The plan's checklists, computed from the Plan rather than ticked by hand.

Each check returns a :class:`CheckResult` (name, ok, detail). ``run_checks(plan)``
runs them all (those of its second level: ``ALL_CHECKS`` for head-dim segments, ``KV_CHECKS``
for KV shards, :mod:`helixlib.plan.checks_kv`); the deployment plan's "Dimensional Alignment"
and "GPU Assignment" checklists map onto these names.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from helixlib.plan.build import CommPoint, Op, Plan
from helixlib.plan.names import MeshDim, OutputMode


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": bool(self.ok), "detail": self.detail}


def second_coord(plan: Plan, shard) -> int:
    """The shard's dim segment s, or its KV shard j."""
    return shard.kv_shard if plan.partition.kv else shard.dim_segment


def check_rank_layout(plan: Plan) -> CheckResult:
    """rank = g·m + s (or g·p + j), i.e. the layout of init_device_mesh(dev, (n, m))."""
    n, m = plan.partition.head_groups, plan.partition.second
    mesh = np.arange(plan.world_size).reshape(n, m)
    bad = [s.rank for s in plan.shards if mesh[s.head_group, second_coord(plan, s)] != s.rank]
    letter = "j" if plan.partition.kv else "s"
    return CheckResult("rank_layout_row_major", not bad,
                       f"{n}x{m} mesh, rank = g*{m} + {letter}" + (f"; wrong for ranks {bad}" if bad else ""))


def check_one_partition_per_rank(plan: Plan) -> CheckResult:
    """Every rank holds exactly one (head_group, dim_segment or kv_shard) and every pair has a rank."""
    pairs = Counter((s.head_group, second_coord(plan, s)) for s in plan.shards)
    n, m = plan.partition.head_groups, plan.partition.second
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
    """Column/row slices of Wq, Wk/Wv, Wo, W1/W2 (and Wo columns for concat) cover each index as
    often as the partition says: once, except Wq/Wk/Wv on the p KV shards of a group (p times,
    the redundant projections) and Wk/Wv on the kv_share head groups that use the same KV heads."""
    m, part = plan.model, plan.partition
    D, F, r = m.hidden, m.mlp_hidden, part.kv_shards
    parts = {  # name: (ranges per rank, size, expected owners)
        "Wq columns": ([s.q_ranges for s in plan.shards], m.heads * m.head_dim_qk, r),
        "Wk columns": ([s.k_ranges for s in plan.shards], m.kv_heads * m.head_dim_qk, r * part.kv_share),
        "Wv columns": ([s.v_ranges for s in plan.shards], m.kv_heads * m.head_dim_v, r * part.kv_share),
        "W1 columns, W2 rows": ([[s.mlp_slice] for s in plan.shards], F, 1),
    }
    if part.output == OutputMode.CONCAT:
        parts["Wo columns"] = ([[s.out_columns] for s in plan.shards], D, 1)
    else:
        parts["Wo rows"] = ([s.o_rows for s in plan.shards], m.heads * m.head_dim_v, 1)
    got = {k: _coverage(ranges, size) for k, (ranges, size, _) in parts.items()}
    bad = [k for k, (lo, hi) in got.items() if not lo == hi == parts[k][2]]
    detail = "; ".join(f"{k}: {parts[k][1]} indices, owners {lo}..{hi} (want {parts[k][2]})"
                       for k, (lo, hi) in got.items())
    return CheckResult("weights_partitioned_exactly", not bad, detail)


def check_local_dims_sum(plan: Plan) -> CheckResult:
    """Local widths add up to the global ones: Σ d_s = d per group, Σ heads = H, Σ F/G = F (KV
    shards: every shard of a group holds all of d and the group's Q, so p times those)."""
    m, part = plan.model, plan.partition
    r = part.kv_shards
    seg = sum(s.dim_slice[1] - s.dim_slice[0] for s in plan.shards if s.head_group == 0)
    heads = sum(s.heads[1] - s.heads[0] for s in plan.shards if second_coord(plan, s) == 0)
    qkv = sum(math.prod(plan.op(rk, "q_proj").output_shape[2:]) for rk in range(plan.world_size))
    mlp = sum(plan.op(rk, "fc1").output_shape[2] for rk in range(plan.world_size))
    q_total = m.heads * m.head_dim_qk
    ok = seg == r * m.head_dim and heads == m.heads and qkv == r * q_total and mlp == m.mlp_hidden
    times = f"{r} x " if r > 1 else ""
    return CheckResult("local_dims_sum_to_global", ok,
                       f"sum d_s in a group = {seg} ({times}d = {m.head_dim}); heads over groups = {heads} "
                       f"(H = {m.heads}); Q widths over ranks = {qkv} ({times}H·d = {q_total}); "
                       f"FC1 widths = {mlp} (F = {m.mlp_hidden})")


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
        shapes = {"x": (plan.model.batch, plan.tokens, plan.model.hidden)}
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


def _kv_tensors(prog) -> set[str]:
    """The keys and values a rank's attention reads (second inputs of scores and attn_v)."""
    return {s.inputs[1] for s in prog if isinstance(s, Op) and s.name.split(".")[0] in ("scores", "attn_v")}


def check_batch_sequence_preserved(plan: Plan) -> CheckResult:
    """Every activation keeps B first (a batch chunk B/c under HOP-B) and the query length L in a
    sequence position (keys and values: the KV length, the same for both); the block maps [B,L,D]
    to [B,L,D] (L = 1 in decode)."""
    B, L, D = plan.model.batch, plan.tokens, plan.model.hidden
    batches = {B, B // plan.partition.hop_b}
    problems = []
    for r, prog in enumerate(plan.programs):
        kv = _kv_tensors(prog)
        kv_lengths = {s.output_shape[1] for s in prog if s.output in kv}
        if len(kv_lengths) != 1:
            problems.append(f"rank {r}: keys and values of lengths {sorted(kv_lengths)}")
        for step in prog:
            s = step.output_shape
            if s[0] not in batches or (L not in s[1:] and step.output not in kv):
                problems.append(f"rank {r} {step.name}: {list(s)}")
        last = prog[-1]
        if last.output_shape != (B, L, D):
            problems.append(f"rank {r} output {list(last.output_shape)}")
    return CheckResult("batch_and_sequence_preserved", not problems,
                       f"B = {B}, L = {L} on every tensor" if not problems else "; ".join(problems[:3]))


def check_collective_groups(plan: Plan) -> CheckResult:
    """Every collective runs on a DeviceMesh group: a dim_segment row, a head_group column, or the world."""
    part = plan.partition
    legal = {dim: {tuple(g) for g in part.groups(dim)} for dim in MeshDim}
    bad = [c.name for c in plan.collectives if c.ranks not in legal[c.group]]
    return CheckResult("collectives_on_mesh_groups", not bad,
                       f"{len(plan.collectives)} collectives"
                       + (f"; off-mesh: {bad[:3]}" if bad else ", all on mesh groups"))


def check_kv_heads(plan: Plan) -> CheckResult:
    """Each head group holds exactly the KV heads its query heads use (head h uses KV head
    h // (H/K)), and each KV head sits on kv_share head groups: 1 when n ≤ K; n/K when more head
    groups than KV heads (then the detail states the duplicated KV bytes)."""
    from helixlib.plan.kv_summary import kv_summary

    m, part = plan.model, plan.partition
    per_kv = m.heads // m.kv_heads
    bad = [s.rank for s in plan.shards
           if tuple(sorted({h // per_kv for h in range(*s.heads)})) != tuple(range(*s.kv_heads))]
    holders = Counter(k for s in plan.shards if second_coord(plan, s) == 0 for k in range(*s.kv_heads))
    ok = not bad and set(holders) == set(range(m.kv_heads)) and set(holders.values()) == {part.kv_share}
    kv = kv_summary(plan)
    n, K = part.head_groups, m.kv_heads
    dup = (f"n = {n} > K = {K}: each KV head on {part.kv_share} head groups, " if part.kv_share > 1
           else f"n = {n} <= K = {K}: no KV head copied, ")
    return CheckResult("kv_heads_match_query_heads", ok,
                       dup + f"KV bytes held {sum(kv['kv_bytes_per_rank']):,} = {kv['copies']:g} x unique "
                             f"{kv['unique_kv_bytes']:,} (duplicated {kv['duplicated_kv_bytes']:,})"
                       + (f"; wrong KV heads on ranks {bad[:4]}" if bad else ""))


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
    check_kv_heads,
)


def run_checks(plan: Plan) -> list[CheckResult]:
    """All structural checks of the plan's second level, in a fixed order."""
    if plan.partition.kv:
        from helixlib.plan.checks_kv import KV_CHECKS

        return [check(plan) for check in KV_CHECKS]
    return [check(plan) for check in ALL_CHECKS]
