"""Each check passes on real plans and fails on a plan broken in the way it guards against."""

import copy
import dataclasses

import pytest

from helixlib import Partition, build_plan, factorisations
from helixlib.plan import CommPoint, Op
from helixlib.plan.checks import ALL_CHECKS, run_checks
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES


@pytest.mark.parametrize("qk", QK_MODES)
@pytest.mark.parametrize("out", OUTPUT_MODES)
def test_all_checks_pass_on_every_factorisation(big, qk, out):
    for n, m in factorisations(16):
        results = run_checks(build_plan(big, Partition(n, m, qk, out)))
        assert len(results) == len(ALL_CHECKS)
        assert all(r.ok for r in results), [r for r in results if not r.ok]


def _broken(plan, fn):
    p = copy.deepcopy(plan)
    fn(p)
    return {r.name: r.ok for r in run_checks(p)}


def _replace_step(p, rank, name, **changes):
    prog = p.programs[rank]
    i = next(i for i, s in enumerate(prog) if s.name == name)
    prog[i] = dataclasses.replace(prog[i], **changes)


def test_swapped_coordinates_break_the_layout(plan_4x4):
    def f(p):
        p.shards[1] = dataclasses.replace(p.shards[1], head_group=1, dim_segment=0)
    got = _broken(plan_4x4, f)
    assert not got["rank_layout_row_major"] and not got["one_partition_per_rank"]


def test_overlapping_dim_slices_break_ownership(plan_4x4):
    def f(p):
        p.shards[2] = dataclasses.replace(p.shards[2], dim_slice=(128, 256))
    got = _broken(plan_4x4, f)
    assert not got["every_head_dim_owned_once"] and not got["weights_partitioned_exactly"]


def test_shifted_mlp_slice_breaks_weight_partition(plan_4x4):
    def f(p):
        p.shards[0] = dataclasses.replace(p.shards[0], mlp_slice=(1, 2049))
    assert not _broken(plan_4x4, f)["weights_partitioned_exactly"]


def test_wrong_local_width_breaks_sum_and_chain(plan_4x4):
    def f(p):
        _replace_step(p, 3, "q_proj", output_shape=(1024, 10000, 4, 64))
    got = _broken(plan_4x4, f)
    assert not got["local_dims_sum_to_global"] and not got["producer_consumer_shapes_match"]


def test_misaligned_gather_is_caught(big):
    plan = build_plan(big, Partition(4, 4, output="concat"))

    def f(p):
        _replace_step(p, 5, "o_gather_segments", input_shape=(1024, 10000, 4, 96))
    assert not _broken(plan, f)["no_concat_mismatch"]


def test_lost_batch_dimension_is_caught(plan_4x4):
    def f(p):
        _replace_step(p, 0, "gelu", output_shape=(512, 10000, 2048))
    got = _broken(plan_4x4, f)
    assert not got["batch_and_sequence_preserved"] and not got["producer_consumer_shapes_match"]


def test_collective_off_the_mesh_is_caught(plan_4x4):
    def f(p):
        p.collectives[0] = dataclasses.replace(p.collectives[0], ranks=(0, 4, 8, 12))
    assert not _broken(plan_4x4, f)["collectives_on_mesh_groups"]


def test_steps_are_ops_and_comm_points(plan_4x4):
    kinds = {type(s) for s in plan_4x4.programs[0]}
    assert kinds == {Op, CommPoint}
