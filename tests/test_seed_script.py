"""The plan's runtime script, run as given, then corrected one step at a time."""

import hashlib

import pytest

from helixlib import Partition, build_plan
from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.seed_script import SEED_SCRIPT, corrections, run_seed_script, seed_terms, seed_total


@pytest.fixture(scope="module")
def steps(plan_4x4):
    return corrections(plan_4x4, load_cluster("dgx-a100"))


#: sha256 of the plan's "Runtime Estimation" code block, as copied from deployment_plan.md
SEED_SHA256 = "1c23842a4cbfec1f43a268f35776b473abdca22b08656b300cb6f09966957651"


def test_the_script_is_stored_verbatim_and_prints_its_figure():
    assert hashlib.sha256(SEED_SCRIPT.read_bytes()).hexdigest() == SEED_SHA256
    assert run_seed_script() == "Total Runtime: 0.18 seconds"
    assert f"Total Runtime: {seed_total():.2f} seconds" == run_seed_script()
    assert sum(seed_terms().values()) == pytest.approx(seed_total(), rel=1e-15)


def test_first_steps_are_the_script_then_per_gpu_flops(steps, plan_4x4):
    assert steps[0].total == seed_total()
    assert steps[1].total == pytest.approx(steps[0].total)  # the outer 2 is the 2 FLOPs per multiply-add
    assert steps[2].total == pytest.approx(16 * steps[1].total)
    names = [s.name for s in steps]
    out = names.index("out-projection")
    # after the out-projection the terms are exactly the plan's matmul FLOPs of one rank at peak
    assert steps[out].total == pytest.approx(plan_4x4.rank_flops(0, "matmul") / 312e12)


def test_last_steps_are_the_estimator(steps, plan_4x4):
    a100 = load_cluster("dgx-a100")
    comm = [s.name for s in steps].index("communication")
    assert steps[comm].total == pytest.approx(float(estimate(plan_4x4, a100).timing.no_overlap_s))
    assert steps[-1].name == "micro-batches that fit"
    fitting = estimate(plan_4x4, a100, micro_batch=32).per_layer["time_no_overlap"]
    assert steps[-1].total == pytest.approx(float(fitting))
    assert all(s.explanation for s in steps)
    assert steps[-1].total > 90 * steps[0].total


def test_gather_qk_contracts_scores_over_the_full_head_dim(big):
    steps = corrections(build_plan(big, Partition(4, 4, "gather_qk")), load_cluster("dgx-a100"))
    i = [s.name for s in steps].index("scores and P·V")
    assert steps[i].terms["scores"] == pytest.approx(4 * steps[i].terms["attn_v"])


def test_the_plans_literal_concat_dataflow_corrects_to_its_own_estimate(big):
    a100 = load_cluster("dgx-a100")
    plan = build_plan(big, Partition(4, 4, "reduce_scores", "concat"))
    steps = corrections(plan, a100)
    names = [s.name for s in steps]
    out = names.index("out-projection")
    assert steps[out].total == pytest.approx(plan.rank_flops(0, "matmul") / 312e12)
    comm = steps[names.index("communication")]
    assert comm.total == pytest.approx(float(estimate(plan, a100).timing.no_overlap_s))
    assert "o_gather_segments (all-gather over 4)" in comm.explanation
