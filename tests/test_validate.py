"""Validation of the estimator against the 16-rank run: the comparison arithmetic on made-up
numbers, one real measured configuration (bytes against the Plan), and the recorded results
(``data/results/cpu_validation.json``) reproduced from their stored calibration."""

import pytest

from helixlib import Partition, build_plan
from helixlib.validation.calibrate import AlphaBetaFit
from helixlib.validation.validate import (
    Config,
    cluster_of,
    default_configs,
    error_rows,
    error_summary,
    load_results,
    measure,
    plan_bytes,
    predict,
    ranking,
    spearman,
    verdict,
)
from helixlib.views.validate_views import bytes_table, error_table, fit_table, ranking_table, summary_table


def _result(model, part, measured, predicted):
    cfg = Config(model, part)
    return {"config": cfg.to_dict(), "measured": {"forward_s": measured / 2, "training_s": measured},
            "predicted": {"forward_s": predicted / 2, "training_s": predicted}}


def test_errors_summary_and_ranking_on_made_up_numbers(tiny):
    parts = [Partition(16, 1), Partition(4, 4), Partition(1, 16)]
    # measured 1.0, 2.0, 3.0; predicted 1.1 (+10 %), 1.5 (-25 %), 3.3 (+10 %): order kept
    results = {"held_out": [_result(tiny, p, m, q) for p, m, q in zip(parts, (1.0, 2.0, 3.0), (1.1, 1.5, 3.3))]}
    rows = error_rows(results)
    assert [r["training_error"] for r in rows] == pytest.approx([0.1, -0.25, 0.1])
    s = error_summary(rows)["training"]
    assert s["mean_abs"] == pytest.approx(0.15) and s["max_abs"] == pytest.approx(0.25) and s["configs"] == 3
    (fam,) = ranking(rows)
    assert fam["spearman"] == pytest.approx(1.0) and fam["swapped_pairs"] == []
    # predicted 2.5 for the 4x4 swaps it with 1x16 (measured 2.0 vs 3.0: a 50 % gap)
    results["held_out"][1] = _result(tiny, parts[1], 2.0, 3.5)
    (fam,) = ranking(error_rows(results))
    assert fam["spearman"] == pytest.approx(0.5)
    (swap,) = fam["swapped_pairs"]
    assert swap["measured_gap"] == pytest.approx(0.5) and "4x4" in swap["pair"][0] and "1x16" in swap["pair"][1]
    assert ranking_table(results)[0][2] == "16x1, 4x4, 1x16"
    assert error_table(rows)[1][-1] == "-25.0%"


def test_verdict_holds_the_errors_against_the_goal(tiny):
    def held_out(*predicted):  # measured 1.0 s each
        parts = [Partition(16, 1), Partition(4, 4)]
        return {"held_out": [_result(tiny, p, 1.0, q) for p, q in zip(parts, predicted)]}

    assert verdict(held_out(1.0, 1.25))[1] == ("training: mean |error| 12.5%, max |error| 25.0% over 2 "
                                               "configurations — goal mean <= 15%, max <= 30%: met")
    assert verdict(held_out(1.1, 0.75))[1].endswith("NOT met")  # mean 17.5 % > 15 %
    assert verdict(held_out(1.0, 1.31))[1].endswith("NOT met")  # max 31 % > 30 %


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_held_out_configurations_differ_from_the_calibration_ones():
    calibration, held_out = default_configs("helix-small")
    labels = {c.label for c in calibration}
    assert not labels & {c.label for c in held_out}
    assert len({c.size for c in held_out}) == 3 and {c.size for c in calibration}.isdisjoint(c.size for c in held_out)
    assert {c.partition.qk_mode for c in held_out} == {"reduce_scores", "gather_qk"}
    assert {c.partition.output for c in held_out} == {"allreduce", "concat"}
    assert {(c.partition.head_groups, c.partition.dim_segments) for c in held_out} == {
        (16, 1), (8, 2), (4, 4), (2, 8), (1, 16)}
    for c in calibration + held_out:
        build_plan(c.model, c.partition)  # every one is a valid partition of its model


def test_a_measured_run_moves_the_bytes_the_plan_says(tiny):
    """16 ranks of helix-tiny, one timed repeat: the bytes each rank's recorded collectives moved
    in a training step are exactly the Plan's (times are only checked to be there)."""
    config = Config(tiny.replace(seq_len=16), Partition(2, 8, "gather_qk"))
    measured = measure(config, repeats=1, warmup=0)
    assert measured["communicated_bytes"] == plan_bytes(build_plan(config.model, config.partition))
    assert measured["forward_s"] > 0 and measured["training_s"] > 0
    assert {"q_allgather", "k_allgather"} <= set(measured["collectives"])


@pytest.fixture(scope="module")
def recorded():
    return load_results()


def test_recorded_predictions_reproduce_from_the_stored_calibration(recorded):
    cluster = cluster_of(recorded)
    for split in ("calibration_configs", "held_out", "drift"):
        for r in recorded[split]:
            again = predict(Config.from_dict(r["config"]), cluster)
            for key in ("forward_s", "training_s"):
                assert again[key] == pytest.approx(r["predicted"][key], rel=1e-9), (r["config"]["label"], key)


def test_recorded_runs_moved_the_plans_bytes_on_every_rank(recorded):
    rows = bytes_table(recorded)
    assert len(rows) == sum(len(recorded[s]) for s in ("calibration_configs", "held_out", "drift"))
    assert all(row[1] == 16 and row[-1] == "yes" for row in rows)
    for r in recorded["held_out"]:
        config = Config.from_dict(r["config"])
        assert r["predicted"]["communicated_bytes"] == plan_bytes(build_plan(config.model, config.partition))


def test_recorded_run_is_held_out_and_complete(recorded):
    assert recorded["configs"] == "default"
    calibration, held_out = default_configs(recorded["model"])
    assert [r["config"]["label"] for r in recorded["held_out"]] == [c.label for c in held_out]
    assert [r["config"]["label"] for r in recorded["calibration_configs"]] == [c.label for c in calibration]
    assert len(summary_table(recorded)) == 3
    assert len(fit_table(recorded["calibration"]["collective_fits"])) == 12  # 3 kinds x 4 group sizes
    meas = recorded["calibration"]["measurements"]
    cpu = cluster_of(recorded)  # the figures notebook 04 prints about the preset are the measured ones
    assert cpu.device.peak_flops("fp32") == max(g["flops"] / g["seconds"] for g in meas["gemm"] if g["dtype"] == "fp32")
    assert cpu.device.launch_overhead_s == meas["overhead_s"]
    for f in recorded["calibration"]["collective_fits"]:  # the stored fit errors are the fit's own
        fit = AlphaBetaFit(f["kind"], f["p"], f["alpha_s"], f["busbw"], tuple(f["sizes"]), tuple(f["seconds"]))
        assert abs(fit.relative_errors).max() == pytest.approx(f["max_abs_rel_error"], rel=1e-12)
    assert all(r["measured"]["training_s"] > r["measured"]["forward_s"] > 0
               for s in ("calibration_configs", "held_out", "drift") for r in recorded[s])
