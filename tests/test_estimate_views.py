"""What notebooks 04 and 06 show, asserted: speedup, replication, placement, the design-space claims."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helixlib.estimate.design_space import best, evaluate, grid
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.seed_script import corrections
from helixlib.views.estimate_views import (
    correction_rows,
    memory_rows,
    memory_scenarios,
    placement,
    plot_breakdown,
    plot_corrections,
    plot_memory,
    plot_strategies,
    replication_rows,
    speedup_rows,
)

A100 = load_cluster("dgx-a100")


def test_no_partition_of_16_gpus_speeds_up_16x(big):
    rows = speedup_rows(big, A100, 16)
    assert len(rows) == 5 + 4  # every n x m, and gather_qk where m > 1
    assert all(r["speedup"] < r["speedup_compute"] < 16 for r in rows)
    head_parallel = next(r for r in rows if r["partition"] == "16x1")
    assert head_parallel["speedup_compute"] == max(r["speedup_compute"] for r in rows)


def test_replication_of_the_plans_tensors(plan_4x4):
    rows = {r[0]: r[3] for r in replication_rows(plan_4x4, A100)}
    assert rows == {"x": "1x", "h1": "1x", "q": "16x", "p": "4x", "u": "16x", "weights": "16.0x"}


def test_placement_on_smaller_nodes(plan_4x4):
    rows = placement(plan_4x4, A100, (8, 2))
    scores = [r for r in rows if r[1] == "scores_allreduce"]
    assert [r[2] for r in scores] == ["4 ranks on 1 node(s)", "4 ranks on 2 node(s)"]
    layer = [r for r in rows if r[1] == "one layer (dataflow)"]
    assert len(layer) == 2


def test_tables_and_plots_build(plan_4x4):
    steps = corrections(plan_4x4, A100)
    rows = correction_rows(steps)
    assert rows[0][2] == "" and rows[2][2] == "x16"
    ests = memory_scenarios(plan_4x4, A100, {"forward": {}, "training, b = 1": dict(training=True, micro_batch=1)})
    table = memory_rows(ests)
    assert table[0][-2:] == ["no", 32] and table[1][-2:] == ["no", "none"]
    for ax in (plot_corrections(steps), plot_memory(ests), plot_breakdown(ests["forward"])):
        assert ax.has_data()


# ---- what 06_design_space says ------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep():
    table = grid(world_sizes=(8, 16, 32, 64), seq_lens=(2048, 8192, 32768), micro_batches=(1, 8),
                 flash=(False, True), recompute=(False, True), training=(False, True))
    return table, evaluate(table)


def test_past_16_gpus_only_helix_and_ring_split_16_heads(sweep):
    table, res = sweep
    big = res["valid"] & (table["world_size"] > 16)
    assert set(table["strategy"][big]) == {"helix", "ring"}
    assert (table["dim_segments"][big & (table["strategy"] == "helix")] > 1).all()


def test_gathering_q_and_k_beats_reducing_scores_when_L_exceeds_2d(sweep):
    table, res = sweep
    key = lambda i: tuple(table[c][i] for c in ("world_size", "seq_len", "head_groups", "micro_batch", "flash",
                                                "recompute", "training"))
    t = {("rs" if table["qk_mode"][i] == "reduce_scores" else "gq",) + key(i): res["time_dataflow"][i]
         for i in np.nonzero(res["valid"] & (table["strategy"] == "helix") & (table["dim_segments"] > 1))[0]}
    pairs = [(t[("gq",) + k[1:]], v) for k, v in t.items() if k[0] == "rs"]
    assert pairs and all(gq < rs for gq, rs in pairs)


def test_70b_training_needs_16_gpus_and_sequence_sharding_buys_micro_batch(sweep):
    table, res = sweep
    train = res["valid"] & table["training"] & (table["seq_len"] == 8192) & table["recompute"] & table["flash"]
    assert not (res["fits"] & train & (table["world_size"] == 8)).any()
    at16 = train & (table["world_size"] == 16)
    lmb = lambda s: res["largest_micro_batch"][at16 & (table["strategy"] == s)].max()
    assert lmb("helix") == 1 < lmb("megatron-sp")  # helix keeps [b, L, D] tensors on every rank


def test_best_returns_one_row_per_strategy_family(sweep):
    table, res = sweep
    rows = best(table, res, ("seq_len", "training", "world_size"))
    g16 = [r for r in rows if (r["seq_len"], r["training"], r["world_size"]) == (8192, False, 16)]
    assert sorted(r["strategy"] for r in g16) == ["Megatron TP", "Megatron TP+SP", "Ulysses SP", "helix",
                                                  "ring attention"]
    helix = next(r for r in g16 if r["strategy"] == "helix")
    i = np.nonzero(res["valid"] & res["fits"] & (table["strategy"] == "helix") & (table["seq_len"] == 8192)
                   & ~table["training"] & (table["world_size"] == 16))[0]
    assert helix["time_dataflow"] == res["time_dataflow"][i].min()
    assert plot_strategies(g16).has_data()


def test_collective_model_meets_published_points_it_was_not_built_from():
    """Bus bandwidths reported in NCCL issues (not among the sweeps the model interpolates) against the model."""
    from helixlib.views.estimate_views import MEASURED_BUSBW, busbw_rows

    rows = busbw_rows()
    assert len(rows) == len(MEASURED_BUSBW) >= 4
    assert all(0.85 < float(r[5]) < 1.15 for r in rows)
