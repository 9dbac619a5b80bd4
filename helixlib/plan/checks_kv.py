"""The checks of a KV-shard Plan: the shared ones of :mod:`helixlib.plan.checks` and those only
the KV-sequence split has — every KV position on exactly one shard, every head combined on
exactly one rank, and every All-to-All cut along the head axis into p equal pieces."""

from __future__ import annotations

import numpy as np

from helixlib.plan.build import Plan
from helixlib.plan.checks import (
    CheckResult,
    check_batch_sequence_preserved,
    check_collective_groups,
    check_kv_heads,
    check_local_dims_sum,
    check_one_partition_per_rank,
    check_rank_layout,
    check_shapes_chain,
    check_weights_partitioned,
)
from helixlib.plan.names import CollectiveKind
from helixlib.plan.ops import CommPoint, numel


def check_kv_positions_owned_once(plan: Plan) -> CheckResult:
    """Within each head group, every KV position of the context is on exactly one shard."""
    part, S = plan.partition, plan.context
    problems = []
    for g in range(part.head_groups):
        count = np.zeros(S, dtype=np.int64)
        for s in plan.shards:
            if s.head_group == g:
                for lo, hi in s.positions:
                    count[max(lo, 0):min(hi, S)] += 1
                if any(hi > S or lo < 0 for lo, hi in s.positions):
                    problems.append(f"rank {s.rank} owns positions outside 0..{S - 1}")
        if count.min() != 1 or count.max() != 1:
            problems.append(f"head group {g}: owners per position between {count.min()} and {count.max()}")
    sizes = sorted({s.kv_length for s in plan.shards})
    return CheckResult("every_kv_position_owned_once", not problems,
                       f"{S} positions in blocks of {part.tokens_per_block}, {part.kv_placement}, over "
                       f"{part.kv_shards} shards ({sizes[0]}..{sizes[-1]} each)"
                       + ("; " + "; ".join(problems[:3]) if problems else ""))


def check_heads_combined_once(plan: Plan) -> CheckResult:
    """After the All-to-All each query head is combined (and out-projected) on exactly one rank,
    a rank of its own head group."""
    H = plan.model.heads
    count = np.zeros(H, dtype=np.int64)
    outside = []
    for s in plan.shards:
        lo, hi = s.out_heads
        count[lo:hi] += 1
        if lo < s.heads[0] or hi > s.heads[1]:
            outside.append(s.rank)
    ok = count.min() == count.max() == 1 and not outside
    return CheckResult("every_head_combined_once", ok,
                       f"{H} heads, combined on between {count.min()} and {count.max()} ranks each"
                       + (f"; outside their group on ranks {outside[:4]}" if outside else ""))


def check_all_to_all_aligned(plan: Plan) -> CheckResult:
    """Every All-to-All sends what it receives (same elements) and its output holds one piece per
    shard of the group: dim 2 is p and p · (heads per piece) is the input's head count."""
    problems, checked = [], 0
    for r, prog in enumerate(plan.programs):
        for c in prog:
            if not isinstance(c, CommPoint) or c.forward_kind != CollectiveKind.ALL_TO_ALL:
                continue
            checked += 1
            i, o = c.input_shape, c.output_shape
            if numel(i) != numel(o) or o[2] != len(c.ranks) or o[2] * o[3] != i[2] or o[:2] != i[:2]:
                problems.append(f"rank {r} {c.name}: {list(i)} -> {list(o)}")
    return CheckResult("all_to_all_aligned", not problems and checked > 0,
                       f"{checked} All-to-Alls checked" + (": " + "; ".join(problems[:3]) if problems
                                                          else ", each split by head into its group's shards"))


KV_CHECKS = (
    check_rank_layout,
    check_one_partition_per_rank,
    check_weights_partitioned,
    check_local_dims_sum,
    check_shapes_chain,
    check_batch_sequence_preserved,
    check_collective_groups,
    check_kv_heads,
    check_kv_positions_owned_once,
    check_heads_combined_once,
    check_all_to_all_aligned,
)
