"""The explorer: set control values from Python, assert on what it computed."""

import pytest

from helixlib import Partition, build_plan, load_model
from helixlib.core.numbers import divisors
from helixlib.estimate.estimator import Options, largest_micro_batch
from helixlib.estimate.hardware import load_cluster
from helixlib.views import widgets
from helixlib.views.widgets import Explorer, explore, memory_html, time_html


@pytest.fixture
def explorer(monkeypatch):
    calls = []
    real = widgets.explore
    monkeypatch.setattr(widgets, "explore", lambda **kw: calls.append(kw) or real(**kw))
    ex = Explorer()
    ex.calls = calls
    return ex


def test_explore_ranks_every_strategy_and_agrees_with_the_estimate():
    r = explore(micro_batch=1)
    names = [row["strategy"] for row in r.ranking]
    assert {"Megatron TP+SP", "Ulysses SP", "ring attention", "head-parallel (helix 16x1)"} <= set(names)
    assert [row["current"] for row in r.ranking].count(True) == 1
    current = next(row for row in r.ranking if row["current"])
    assert current["strategy"] == "helix 4x4 reduce_scores"
    assert current["time_dataflow"] == pytest.approx(r.estimate.per_model["time_dataflow"], rel=1e-12)
    plan = build_plan(load_model("helix-70b"), Partition(4, 4))
    assert r.estimate.largest_micro_batch == largest_micro_batch(plan, load_cluster("dgx-a100"), Options()) == 32
    times = [row["time_dataflow"] for row in r.ranking if row["fits"]]
    assert times == sorted(times)


def test_each_change_computes_once_with_the_new_value(explorer):
    r0 = explorer.result
    assert r0.plan.partition.head_groups == 4 and len(explorer.calls) == 1
    explorer.controls["head_groups"].value = 16
    assert len(explorer.calls) == 2
    r1 = explorer.result
    assert r1.plan.partition.dim_segments == 1
    assert "scores_allreduce" in [b[0] for b in r0.breakdown] and "scores_allreduce" not in [b[0] for b in r1.breakdown]
    assert r1.estimate.program.sizes["p"] == r0.estimate.program.sizes["p"] / 4  # [b, H/n, L, L]: n = 16, not 4
    assert r1.memory["working"] < r0.memory["working"]


def test_flash_and_training_change_the_outputs(explorer):
    m0 = explorer.result.memory["total"]
    explorer.controls["flash"].value = True
    assert "flash_attention" in [b[0] for b in explorer.result.breakdown]
    assert explorer.result.memory["total"] < m0
    explorer.controls["training"].value = True
    assert explorer.result.memory["optimizer"] > 0 and explorer.result.estimate.options.training
    assert "does NOT fit" in memory_html(explorer.result)
    assert "exposed communication" in time_html(explorer.result)


def test_gpus_offer_the_partitions_the_model_admits(explorer):
    explorer.controls["world_size"].value = 8
    hg = explorer.controls["head_groups"]
    assert [v for _, v in hg.options] == [1, 2, 4, 8]
    assert explorer.result.plan.world_size == 8 and explorer.result.plan.partition.head_groups == 4
    explorer.controls["world_size"].value = 64  # 16 heads: n = 32, 64 do not divide H
    assert [v for _, v in hg.options] == [1, 2, 4, 8, 16]
    assert explorer.result.plan.world_size == 64


def test_model_and_batch_drive_their_dependents(explorer):
    c = explorer.controls
    c["model"].value = "helix-tiny"
    assert (c["seq_len"].value, c["batch"].value) == (32, 2)
    assert explorer.result.plan.model.name == "helix-tiny" and explorer.result.plan.model.seq_len == 32
    c["batch"].value = 12
    assert list(c["micro_batch"].options) == divisors(12)
    c["micro_batch"].value = 6
    assert explorer.result.estimate.micro_steps == 2


def test_bad_values_give_a_message_not_an_exception(explorer):
    explorer.controls["seq_len"].value = 0
    assert explorer.result.error == "seq_len: must be a positive integer, got 0"
    explorer.controls["seq_len"].value = 2048
    assert explorer.result.error is None and explorer.result.plan.model.seq_len == 2048


def test_the_error_is_one_line_and_escaped(explorer):
    from helixlib.views.widgets import error_html

    explorer.controls["seq_len"].value = -3
    html = error_html(explorer.result.error)
    assert "\n" not in html and html.count("<div") == 1
    assert "seq_len: must be a positive integer, got -3" in html
    assert "&lt;b&gt;" in error_html("<b>") and "<b>cannot estimate:</b>" in html


def test_times_never_print_in_scientific_notation(explorer):
    explorer.controls["training"].value = True
    rows = explorer.result.ranking_rows()
    assert any("min)" in r[2] or " h)" in r[2] for r in rows)  # training steps of helix-70b take minutes
    assert not any("e+" in str(c) for r in rows for c in r)


def test_the_ranking_leads_with_the_winner_and_folds_the_rest(explorer):
    from helixlib.views.tables import MAX_UNFOLDED_ROWS
    from helixlib.views.widgets import ranking_html

    html = ranking_html(explorer.result)
    first = next(r for r in explorer.result.ranking if r["fits"])
    assert html.startswith(f"<p><b>fastest that fits: {first['strategy']}</b>")
    assert (len(explorer.result.ranking) > MAX_UNFOLDED_ROWS) == ("<details>" in html)


def test_without_a_widget_manager_the_cell_says_what_it_is(explorer):
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Explorer (interactive: needs a running kernel")
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id


def test_the_snapshot_shows_the_current_output(explorer, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    explorer.controls["world_size"].value = 8
    shown.clear()
    explorer.show_snapshot()
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["HTML", "Image", "HTML"]
    assert "8 GPUs" in shown[0].data and "memory per GPU" in shown[2].data
