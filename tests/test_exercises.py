"""Every exercise's answer (helixlib.workbook.exercises*), recomputed another way: from the
formulas, from the model's fields, or from a different part of helixlib than the answer uses."""

import math

import numpy as np
import pytest

from helixlib import Partition, build_plan, load_model
from helixlib.audit.claims import Claim, judge
from helixlib.audit.registry import Computed
from helixlib.plan.partition import valid_partitions
from helixlib.views.rankmap import owner_map
from helixlib.workbook import exercises as ex
from helixlib.workbook import exercises_cost as exc
from helixlib.workbook import exercises_study as exs


def test_an_answer_is_folded_until_opened():
    a = ex.Answer(3, "because")
    assert a._repr_html_().startswith("<details><summary><b>Answer</b>") and "because" in a._repr_html_()
    assert "folded" in repr(a) and "3" not in repr(a)


def test_rank_of_is_the_owner_in_the_rank_map():
    for head, col in [(9, 300), (0, 0), (15, 511), (4, 127)]:
        owner = owner_map(build_plan(load_model("helix-70b"), Partition(4, 4)))[head, col]
        assert ex.rank_of("helix-70b", 4, 4, head, col).value == owner == (head // 4) * 4 + col // 128


def test_blocks_for_a_parameter_count():
    m = load_model("helix-70b")
    for total in (70e9, 175e9):
        n = ex.blocks_for("helix-70b", total).value
        assert abs(n * m.params_per_block - total) <= m.params_per_block / 2


def test_partitions_of_16():
    a = ex.partitions_of("helix-70b", 16)
    assert a.value == ["1x16", "2x8", "4x4", "8x2", "16x1"]
    assert len(a.value) == len(valid_partitions(load_model("helix-70b"), 16))


def test_tiny_row_by_hand():
    a = ex.tiny_row(2).value
    # q2 = (1, 1 | 0, 1); k0 = (1, 1 | 0, 1), k1 = (0, 1 | 1, 1), k2 = (1, 0 | 1, 0)
    assert a["partial"] == [[2, 1, 1], [1, 1, 0]] and a["scores"] == [3, 2, 1]
    e = np.exp(np.array([3, 2, 1]) / 2)
    assert a["probabilities"] == pytest.approx(list(e / e.sum()), abs=5e-4)


def test_score_message_is_b_hg_l2_beta():
    m = load_model("helix-70b")
    a = ex.score_message("helix-70b", 4, 4).value
    assert a["per_group"] == m.batch * (m.heads // 4) * m.seq_len ** 2 * m.dtype_bytes == 819_200_000_000
    assert a["groups"] == 4 and a["total"] == 4 * a["per_group"]


def test_rule_of_thumb_for_the_readers_hardware():
    assert ex.rule_of_thumb_for(8, 2, 64, 600e12, 300e9).value == pytest.approx(7 / 8 * 2 / 64 * 2000)


def test_scores_on_rank():
    m = load_model("helix-70b")
    assert ex.scores_on_rank("helix-70b", 4, 4, 6).value == [m.batch, m.heads // 4, m.seq_len, m.seq_len]


def test_collective_counts_follow_the_layer():
    # gather_qk + concat, forward: q and k all-gathers, two output gathers, the final gather, FC2's all-reduce
    assert ex.collective_counts("helix-70b", 4, 4, "gather_qk", "concat").value == {"forward": 6, "backward": 6}
    # reduce_scores + allreduce: scores, out-projection, FC2 forward; scores, qkv_input, fc1_input backward
    assert ex.collective_counts("helix-70b", 4, 4, "reduce_scores", "allreduce").value == {"forward": 3,
                                                                                           "backward": 3}


@pytest.mark.slow
def test_segment_local_answers_are_wrong_and_m1_is_exact():
    assert ex.segment_local_error("helix-tiny", 2, 8).value > 0.1
    errors = exc.segment_local_by_partition("helix-tiny", [(16, 1), (4, 4)]).value
    assert errors["16x1"] < 1e-12 < 0.1 < errors["4x4"]
    a = ex.segment_local_passes_dag("helix-tiny", 2, 2).value
    assert a["dag_checks_pass"] is True and a["forward_error"] > 0.1


def test_mha_graph_size_counts_ops_per_gpu():
    a = ex.mha_graph_size("helix-70b", 4, 4).value
    assert a["ops"] == 9 * 16  # ln1, q, k, v, scores, softmax, attn_v, out_proj, residual1 on every GPU
    # qkv_input (one world group), scores_allreduce (one per head group), out_proj_allreduce (world)
    assert a["comm"] == 1 + 4 + 1


def test_roofline_bound_against_the_ridge_point():
    from helixlib.estimate.hardware import load_cluster

    dev = load_cluster("dgx-a100").device
    ridge = dev.peak_flops("bf16") / dev.memory_bandwidth
    assert exc.roofline_bound("helix-70b", 4, 4, "dgx-a100", "softmax").value == "memory"
    assert 5 / 4 < ridge  # 5 FLOPs per score, 2 + 2 bytes read and written: far below the ridge
    assert exc.roofline_bound("helix-70b", 4, 4, "dgx-a100", "fc1").value == "compute"


def test_allreduce_time_is_alpha_plus_bus_traffic():
    from helixlib.estimate.alphabeta import collective_time
    from helixlib.estimate.hardware import load_cluster

    a = exc.allreduce_time("helix-70b", 4, 4, "dgx-h100").value
    t = collective_time(load_cluster("dgx-h100"), "all_reduce", 819_200_000_000, 4, 1)
    assert a == pytest.approx(float(t.time_s), rel=1e-9)


def test_largest_micro_batch_for_training_is_none_on_a100():
    a = exc.largest_micro_batch("helix-70b", 4, 4, "dgx-a100", True, True, True)
    assert a.value is None and "nothing fits" in a.text


def test_rank_bytes_is_the_score_tensor():
    m = load_model("helix-tiny")
    assert exc.rank_bytes("helix-tiny", 4, 4, 0, "scores_allreduce").value == (
        m.batch * (m.heads // 4) * m.seq_len ** 2 * m.dtype_bytes)


def test_fastest_is_the_minimum_over_the_cell():
    from helixlib.estimate.design_space import evaluate, grid, labels

    t = grid(models=("helix-70b",), hardware=("dgx-a100",), world_sizes=(64,), seq_lens=(8192,),
             micro_batches=(1, 2, 4, 8, 16, 32), flash=(False, True), recompute=(False, True), training=(True,))
    r = evaluate(t)
    ok = r["valid"] & r["fits"]
    i = int(np.argmin(np.where(ok, r["time_dataflow"], np.inf)))
    assert exc.fastest("helix-70b", "dgx-a100", 64, 8192, True).value == labels(t)[i]


def test_ring_slowdown_is_the_ratio_of_the_ring_points():
    from helixlib.views.design_views import ring_points

    a, b = ring_points("helix-70b", "dgx-a100", [8, 16], 8192)
    assert exc.ring_slowdown("helix-70b", "dgx-a100", 8192).value == pytest.approx(b.dataflow / a.dataflow)
    assert (a.nodes, b.nodes) == (1, 2)


def test_only_helix_shards_heads_past_16_gpus():
    names = exc.head_sharding_schemes("helix-70b", 32).value
    assert names and all(n.startswith("helix") for n in names)
    assert "Megatron TP+SP" in exc.head_sharding_schemes("helix-70b", 16).value


def _verdicts():
    claims = [Claim("a", "s", "q", "flops", claimed=10.0), Claim("b", "s", "q", "flops", claimed=1.0),
              Claim("c", "s", "q", "flops", claimed=5.0, compare="at_most"),
              Claim("d", "s", "q", "flops", claimed=1.0, compare="qualitative")]
    return [judge(c, Computed(v, "")) for c, v in zip(claims, (1000.0, 1.0, 50.0, 2.0))]


def test_verdict_counts_and_the_furthest_claim():
    vs = _verdicts()
    assert exc.verdict_counts(vs).value == {"wrong": 2, "holds": 1, "unverifiable as stated": 1}
    assert exc.furthest_off(vs).value == "a"  # x100; "c" is a bound (x10), not a slip


def test_variant_share_is_the_headline():
    from helixlib.audit.headline import headline_figures

    h = headline_figures()
    a = exc.variant_share().value
    assert a == {str(k): v.communication_over_compute for k, v in h.variants.items()}
    assert math.isclose(a["concat"], h.audited_figures.communication_over_compute)


# ---- 08 and 09 (helixlib.workbook.exercises_study) ------------------------------------------


def test_decode_exercises_from_the_formulas():
    m, S, B = load_model("helix-paper-llama-405b"), 2 ** 20, 8
    assert exs.tp_kv_copies(m.name).value == 64 // m.kv_heads
    assert exs.comm_bytes_ratio(m.name, context=S, batch=B).value == pytest.approx(
        (B * m.heads // 8 * S * 2) / (B * m.heads // 8 * (m.head_dim_v * 2 + 4)), rel=1e-12)
    assert exs.kv_max_batch(m.name).value == 40  # the largest B with fits == True (test_decode_notebook)


def test_bubble_share_is_the_fill_and_drain_of_unequal_stages():
    est = exs.study_step("gpt3-175b", 64, "dgx-a100")
    t = est.stage_s
    assert len(t) == 8 and est.parallel.micro_batches == 64
    # 1F1B without interleaving: m·max t + (Σ t − max t), so the bubble is Σ t − max t
    assert exs.bubble_share("gpt3-175b", 64, "dgx-a100").value == pytest.approx((sum(t) - max(t)) / est.time_s)
    p, mb = 8, 64
    assert exs.bubble_share("gpt3-175b", 64, "dgx-a100").value < (p - 1) / mb  # below the textbook share


def test_mfu_by_hand_is_korthikantis_formula():
    m = load_model("gpt3-175b")
    est = exs.study_step("gpt3-175b", 64, "dgx-a100")
    B, s, h, L, V = 64, m.seq_len, m.hidden, m.layers, m.vocab
    flops = 72 * B * s * h ** 2 * L * (1 + s / (6 * h) + V / (12 * h * L))  # Korthikanti et al. 2022, Eq. 7
    mfu = flops / (est.time_s * 64 * 312e12)  # A100 dense bf16 peak, data sheet
    assert exs.mfu_by_hand("gpt3-175b", 64, "dgx-a100").value == pytest.approx(mfu, rel=1e-9)


def test_largest_miss_is_the_worst_specified_row():
    from helixlib.validation.published import evaluate, load_rows

    results = [r for r in evaluate(load_rows()[1]) if r["specified"] and r["points"] is None]
    errors = sorted(abs(r["predicted"] / r["published"] - 1) for r in results)
    worst = exs.largest_miss().value
    assert abs(next(r for r in results if r["id"] == worst)["error"]) == pytest.approx(errors[-1])
