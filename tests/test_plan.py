"""The Plan for helix-70b and helix-tiny: ranks, shapes, FLOPs, collectives, memory."""

import json
import math

import pytest
from helpers import run_cli

from helixlib import Partition, build_plan, factorisations
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES


def plan_json(*args):
    out = run_cli("plan", "--json", *args, check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def j44():
    return plan_json("--model", "helix-70b", "--head-groups", "4", "--dim-segments", "4")


def test_json_has_the_documented_fields(j44):
    assert j44["world_size"] == 16
    assert set(j44["ranks"][0]) >= {"rank", "head_group", "dim_segment", "heads", "dim_slice"}
    assert set(j44["ops"][0]) >= {"name", "kind", "rank", "input_shapes", "output_shape", "flops", "bytes"}
    assert set(j44["collectives"][0]) >= {"name", "kind", "ranks", "elements", "dtype_bytes"}
    assert set(j44["memory"][0]) >= {"rank", "weights_bytes", "activation_bytes", "buffer_bytes"}
    assert j44["checks"] and all(c["ok"] for c in j44["checks"])


def test_rank_6_is_group_1_segment_2(j44):
    r6 = j44["ranks"][6]
    assert (r6["rank"], r6["head_group"], r6["dim_segment"]) == (6, 1, 2)
    assert r6["heads"] == [4, 5, 6, 7]
    assert r6["dim_slice"] == [256, 384]
    q = next(o for o in j44["ops"] if o["rank"] == 6 and o["name"] == "q_proj")
    assert q["output_shape"] == [1024, 10000, 4, 128]


def _independent_matmul_flops(op) -> int:
    """2·M·K·N from the op's shapes alone (not from the plan's gemm field)."""
    shapes = op["input_shapes"]
    if op["name"] == "scores":  # q [B, L, h, dq] · k [B, L, h, dk]ᵀ over the head dim
        B, L, h, dq = shapes[0]
        return 2 * B * h * L * dq * shapes[1][1]
    if op["name"] == "attn_v":  # p [B, h, L, L] · v [B, L, h, dv]
        B, h, L, L2 = shapes[0]
        return 2 * B * h * L * L2 * shapes[1][3]
    K, N = shapes[1]  # activation [..., K] (possibly [..., h, d] with h·d = K) · W [K, N]
    M = math.prod(shapes[0]) // K
    return 2 * M * K * N


def test_every_matrix_product_is_a_matmul_with_2mkn_flops(j44):
    names = {"q_proj", "k_proj", "v_proj", "scores", "attn_v", "out_proj", "fc1", "fc2"}
    for r in range(16):
        ops = [o for o in j44["ops"] if o["rank"] == r]
        assert {o["name"] for o in ops if o["kind"] == "matmul"} == names
        for o in ops:
            if o["kind"] == "matmul":
                assert o["flops"] == _independent_matmul_flops(o), o["name"]
        per_rank = sum(o["flops"] for o in ops if o["kind"] == "matmul")
        assert per_rank == sum(_independent_matmul_flops(o) for o in ops if o["kind"] == "matmul")


def test_total_matmul_flops_equal_the_closed_form(big):
    """Per sequence (2 FLOPs per multiply-add): QKV 6LD², scores 2L²D, P·V 2L²D, out 2LD², MLP 4LDF, per sequence."""
    B, L, D, F = big.batch, big.seq_len, big.hidden, big.mlp_hidden
    closed = B * (6 * L * D * D + 2 * L * L * D + 2 * L * L * D + 2 * L * D * D + 4 * L * D * F)
    for n, m in factorisations(16):
        for out in OUTPUT_MODES:
            plan = build_plan(big, Partition(n, m, "reduce_scores", out))
            assert sum(plan.rank_flops(r, "matmul") for r in range(16)) == closed
    # gather_qk computes each group's full scores on all m ranks: the scores term is m times larger
    plan = build_plan(big, Partition(4, 4, "gather_qk"))
    assert sum(plan.rank_flops(r, "matmul") for r in range(16)) == closed + 3 * 2 * B * L * L * D


def test_reduce_scores_collectives(j44):
    fwd = [c for c in j44["collectives"] if c["phase"] == "forward"]
    scores = [c for c in fwd if c["name"] == "scores_allreduce"]
    assert [c["ranks"] for c in scores] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert all(c["kind"] == "all_reduce" and c["elements"] == 1024 * 4 * 10000 * 10000 for c in scores)
    assert all(c["dtype_bytes"] == 2 for c in j44["collectives"])
    assert [c["name"] for c in fwd[4:]] == ["out_proj_allreduce", "fc2_allreduce"]
    assert not any("allgather" in c["name"] for c in fwd)


def test_gather_qk_replaces_the_score_allreduce():
    j = plan_json("--model", "helix-70b", "-n", "4", "-m", "4", "--qk-mode", "gather_qk")
    fwd = [c for c in j["collectives"] if c["phase"] == "forward"]
    assert not any(c["name"] == "scores_allreduce" for c in fwd)
    for name in ("q_allgather", "k_allgather"):
        got = [c for c in fwd if c["name"] == name]
        assert [c["ranks"] for c in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
        assert all(c["kind"] == "all_gather" and c["elements"] == 1024 * 10000 * 4 * 512 for c in got)
    bwd = [c["kind"] for c in j["collectives"] if c["phase"] == "backward" and "allgather" in c["name"]]
    assert bwd == ["reduce_scatter"] * 8


def test_score_vs_qk_traffic_ratio_is_L_over_d(big):
    """Traffic of the two exact qk modes: scores / (Q and K) ≈ L/d per group."""
    rs = build_plan(big, Partition(4, 4)).collectives[0].elements
    qk = 2 * build_plan(big, Partition(4, 4, "gather_qk")).collectives[0].elements
    assert rs / qk == pytest.approx(big.seq_len / big.head_dim / 2)


def test_concat_output_is_the_plans_two_phase_dataflow(big):
    plan = build_plan(big, Partition(4, 4, output="concat"))
    fwd = [c for c in plan.collectives if c.phase == "forward"]
    names = [c.name for c in fwd]
    assert names.count("o_gather_segments") == 4 and names.count("o_gather_groups") == 4
    assert [c.ranks for c in fwd if c.name == "o_gather_groups"] == [(0, 4, 8, 12), (1, 5, 9, 13),
                                                                     (2, 6, 10, 14), (3, 7, 11, 15)]
    o = plan.op(6, "out_proj")
    assert o.input_shapes[0] == (1024, 10000, 16, 512) and o.output_shape == (1024, 10000, 512)
    assert fwd[-2].name == "out_allgather" and fwd[-2].ranks == tuple(range(16))


def test_groups_of_one_rank_communicate_nothing(tiny):
    plan = build_plan(tiny, Partition(16, 1))
    assert {c.name for c in plan.collectives} == {"out_proj_allreduce", "fc2_allreduce", "fc1_input.backward",
                                                  "qkv_input.backward"}
    assert build_plan(tiny, Partition(1, 1)).collectives == []


def test_backward_collectives_mirror_the_forward_mappings(big):
    plan = build_plan(big, Partition(4, 4))
    bwd = [c.name for c in plan.collectives if c.phase == "backward"]
    assert bwd == ["fc1_input.backward"] + ["scores_allreduce.backward"] * 4 + ["qkv_input.backward"]


def test_memory_per_rank(big, plan_4x4):
    B, L, D, F, beta = big.batch, big.seq_len, big.hidden, big.mlp_hidden, 2
    w, f = 4 * 128, F // 16  # this rank's Q width (h_g·d_s) and MLP columns
    weights = 3 * (D * w + w) + w * D + D + 4 * D + (D * f + f) + f * D + D
    scores = 3 * B * 4 * L * L  # partial scores, reduced scores, probabilities
    for mem in plan_4x4.memory():
        assert mem.weights_bytes == weights * beta
        assert mem.score_bytes == scores * beta
        assert mem.total_bytes == mem.weights_bytes + mem.activation_bytes + mem.score_bytes + mem.buffer_bytes
    # weights are not split 16 ways evenly: LayerNorms and the row-parallel biases are replicated
    assert weights * 16 > big.params_per_block


@pytest.mark.parametrize("qk", QK_MODES)
@pytest.mark.parametrize("out", OUTPUT_MODES)
def test_every_factorisation_builds(tiny, qk, out):
    for n, m in factorisations(16):
        plan = build_plan(tiny, Partition(n, m, qk, out))
        assert len(plan.programs) == 16
        assert all(plan.programs[r][-1].output_shape == (2, 32, 256) for r in range(16))
