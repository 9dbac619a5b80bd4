"""FlopCounterMode, an independent oracle, against the Plan's FLOPs per op."""

import pytest

from helixlib import Partition, build_plan
from helixlib.validation.flop_oracle import count_flops


@pytest.mark.parametrize("part", [Partition(4, 4), Partition(16, 1), Partition(1, 16, "gather_qk"),
                                  Partition(2, 8, "gather_qk", "concat")], ids=lambda p: f"{p.head_groups}x"
                         f"{p.dim_segments}-{p.qk_mode}-{p.output}")
def test_counted_flops_equal_the_plans_matmul_flops_per_op(tiny, part):
    plan = build_plan(tiny, part)
    for rank in (0, plan.world_size - 1):
        c = count_flops(plan, rank)
        assert c.matmul_mismatches == [], c.rows()
        # FlopCounterMode counts matmul-like ops only: every element-wise op counts 0
        assert all(c.counted[n] == 0 for n, k in c.kinds.items() if k != "matmul")
        assert sum(c.counted.values()) == c.plan_matmul == plan.rank_flops(rank, "matmul")
        # backward: an input-gradient and a weight-gradient GEMM per GEMM -> 3x forward in all
        assert c.step_counted == 3 * c.plan_matmul


def test_forward_only_counts_the_forward(tiny):
    c = count_flops(build_plan(tiny, Partition(4, 4)), backward=False)
    assert c.step_counted == c.plan_matmul > 0
