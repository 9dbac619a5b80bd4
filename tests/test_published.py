"""The estimator against published GPU training runs (never fitted to them): the file, the conventions
each source counts FLOPs by, and the figures BENCHMARKS.md and notebook 09 report, recomputed."""

import pytest

from helixlib.estimate.step import Parallel
from helixlib.validation.published import (
    GROUPS,
    evaluate,
    load_rows,
    memory_agreement,
    predict,
    quantity,
    spread,
    summary,
)
from helixlib.views.estimate_step_views import folded_rows, plot_parity, summary_rows


@pytest.fixture(scope="module")
def published():
    header, rows = load_rows()
    return header, rows, evaluate(rows)


def test_the_file_has_25_rows_or_more_from_3_independent_sources_or_more(published):
    header, rows, _ = published
    assert len(rows) >= 25 and len({r.id for r in rows}) == len(rows)
    orgs = {header["sources"][r.source]["organisation"] for r in rows}
    assert len(orgs) >= 3
    assert all(r.quantity in GROUPS for r in rows) and all(r.value > 0 for r in rows)
    assert {r.hardware for r in rows} == {"dgx-a100", "dgx-h100"}
    assert header["left_out"]  # what was not modelled is said


def test_each_quantity_is_its_sources_own_formula(published):
    _, rows, _ = published
    row = next(r for r in rows if r.quantity == "hfu_korthikanti")
    pred, est = predict(row)
    B, s, h, L, V = est.parallel.batch, 2048, row.model.hidden, row.model.layers, row.model.vocab
    eq8 = 72 * B * L * s * h * h * (1 + s / (3 * h) + V / (12 * h * L))
    assert pred == pytest.approx(eq8 / (est.time_s * est.parallel.world_size * 312e12))
    row = next(r for r in rows if r.quantity == "tflops_per_gpu_narayanan")
    pred, est = predict(row)
    eq3 = 96 * est.parallel.batch * s * row.model.layers * row.model.hidden ** 2 * (
        1 + s / (6 * row.model.hidden) + V / (16 * row.model.layers * row.model.hidden))
    assert pred == pytest.approx(eq3 / (est.time_s * est.parallel.world_size))
    row = next(r for r in rows if r.quantity == "mfu")
    assert quantity(predict(row)[1], "mfu") == predict(row)[1].mfu


def test_unstated_settings_decide_whether_a_row_is_fully_specified(published):
    _, rows, results = published
    one_t = next(r for r in rows if r.id == "korthikanti22-t5-1t-selective-sequence")
    assert spread(one_t) > 0.02  # 1 or 2 chunks per stage: the bubble moves the step by more than 2 %
    assert not next(x for x in results if x["id"] == one_t.id)["specified"]
    assert all(x["specified"] for x in results if x["source"] == "dgxc2024")
    assert spread(next(r for r in rows if r.id == "korthikanti22-t4-baseline-forward")) == 0


def test_the_figures_benchmarks_and_notebook_09_report(published):
    """Fully specified rows (BENCHMARKS.md, 'The estimator against published GPU runs')."""
    _, _, results = published
    s = summary(results)
    assert (s["per layer"]["rows"], s["step"]["rows"], s["utilisation"]["rows"]) == (10, 14, 13)
    assert s["per layer"]["mean_abs"] == pytest.approx(0.039, abs=0.001) and s["per layer"]["met"]
    assert s["per layer"]["max_abs"] == pytest.approx(0.092, abs=0.001)
    assert s["step"]["mean_abs"] == pytest.approx(0.125, abs=0.001) and not s["step"]["met"]
    assert s["step"]["max_abs"] == pytest.approx(0.222, abs=0.001)
    assert s["utilisation"]["mean_abs"] == pytest.approx(0.082, abs=0.001) and not s["utilisation"]["met"]
    a100 = summary(results, hardware="dgx-a100")
    assert a100["step"]["mean_abs"] == pytest.approx(0.073, abs=0.001)
    assert a100["step"]["max_abs"] == pytest.approx(0.110, abs=0.001)
    assert a100["utilisation"]["mean_abs"] == pytest.approx(0.040, abs=0.001)
    h100 = summary(results, hardware="dgx-h100")
    assert h100["step"]["mean_abs"] == pytest.approx(0.219, abs=0.001)  # optimistic on H100: see BENCHMARKS.md
    assert all(x["error"] < 0 for x in results if x["hardware"] == "dgx-h100" and x["quantity"] == "iteration_s")
    everything = summary(results, specified_only=False)
    assert everything["step"]["rows"] == 33 and everything["step"]["max_abs"] == pytest.approx(0.294, abs=0.001)


def test_every_published_run_fits_in_the_estimates_memory(published):
    _, _, results = published
    m = memory_agreement(results)
    assert m["runs"] == 48 and m["fit"] == m["runs"] and m["do_not_fit"] == []


def test_the_tables_fold_to_12_rows_or_fewer_and_the_parity_plot_draws(published):
    import matplotlib

    matplotlib.use("Agg")
    _, _, results = published
    folded = folded_rows(results)
    assert 1 < len(folded) <= 12 and sum(r[2] for r in folded) == len(results)
    assert len(summary_rows(summary(results))) == 3
    axes = plot_parity(results)
    assert len(axes) == 4 and all(ax.has_data() for ax in axes)


def test_the_published_configurations_are_valid_parallel_settings(published):
    _, rows, _ = published
    for r in rows:
        assert isinstance(r.parallel, Parallel) and r.parallel.world_size > 0
