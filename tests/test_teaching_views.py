"""The views the notebooks teach with: the hand-checkable contraction, the fix's cost and its rule
of thumb, the glossary, readable numbers, folded tables, DAG images, and the design-space and
monitoring pictures — each asserted on what it computes."""

import re
import struct

import numpy as np
import pytest

from helixlib import Partition, build_plan, load_model
from helixlib.estimate.hardware import load_cluster
from helixlib.views import tables
from helixlib.views.contraction import teaching_dag_source, teaching_plan, tiny_example
from helixlib.views.formats import duration, plural
from helixlib.views.glossary import GLOSSARY, glossary_html
from helixlib.views.score_cost import qk_mode_costs, rule_of_thumb, score_cost


def test_the_tiny_example_by_hand():
    ex = tiny_example()
    s0, s1 = ex.partial_scores
    assert s0.tolist() == [[1, 0, 1], [1, 1, 0], [2, 1, 1]]
    assert s1.tolist() == [[1, 2, 1], [0, 1, 1], [1, 1, 0]]
    assert ex.scores.tolist() == [[2, 2, 2], [1, 2, 1], [3, 2, 1]]
    assert ex.probabilities[0] == pytest.approx([1 / 3] * 3)  # equal scores: equal weights
    assert ex.error(ex.output) < 1e-15  # summed scores, 1/sqrt(d): exact
    assert ex.error(ex.segment_local_output) > 0.1  # each rank's own softmax: not attention
    # rank 0 alone would ignore key 1, rank 1 alone favour it
    p0, p1 = (p[0] for p in ex.segment_local_probabilities)
    assert p0[1] < 1 / 3 < p1[1]


def test_the_teaching_dag_is_the_example_on_two_gpus_top_down():
    plan = teaching_plan()
    assert (plan.world_size, plan.model.head_dim, plan.model.seq_len) == (2, 4, 3)
    graph, src = teaching_dag_source()
    assert len(graph.nodes) == 22 and graph.count("comm") == 2
    assert "rankdir=TB" in src and "rankdir=LR" not in src


def test_score_cost_rule_of_thumb_equals_the_estimators_ratio():
    plan = build_plan(load_model("helix-70b"), Partition(4, 4))
    c = score_cost(plan, load_cluster("dgx-a100"))
    m = plan.model
    assert c.message_bytes == m.batch * (m.heads // 4) * m.seq_len ** 2 * m.dtype_bytes
    assert c.scores_flops == 2 * m.batch * (m.heads // 4) * m.seq_len ** 2 * (m.head_dim // 4)
    assert c.rule_of_thumb == pytest.approx(c.ratio, rel=1e-12)
    assert c.ratio > 1  # the sum costs more than the product it completes
    assert rule_of_thumb(4, 2, 128, 1e12, 1e9) == pytest.approx(0.75 * 2 / 128 * 1000)


def test_a_partition_without_segments_is_priced_at_m_2():
    c = score_cost(build_plan(load_model("helix-70b"), Partition(16, 1)), load_cluster("dgx-a100"))
    assert c.m == 2


def test_gather_qk_moves_l_over_d_times_fewer_bus_bytes():
    plan = build_plan(load_model("helix-70b"), Partition(4, 4))
    rs, gq = qk_mode_costs(plan, load_cluster("dgx-a100"))
    assert rs.group_bus_bytes / gq.group_bus_bytes == pytest.approx(plan.model.seq_len / plan.model.head_dim)
    assert gq.scores_s > rs.scores_s  # every rank computes the full scores


def test_every_glossary_term_has_a_primary_source():
    assert len(GLOSSARY) >= 15
    for t in GLOSSARY:
        assert re.search(r"arXiv:\d{4}\.\d{4,5}|https://|\b(19|20)\d\d\b|deployment_plan", t.source), t
    text = glossary_html()
    assert text.startswith("<dl>") and "<table" not in text  # a list, not a long table
    needed = {"MFU", "roofline", "α–β", "bus bandwidth", "Megatron f / g", "sequence parallelism", "Ulysses",
              "ring attention", "ZeRO", "flash attention", "recompute"}
    assert all(any(n in t.term for t in GLOSSARY) for n in needed)


def test_durations_and_plurals_read_well():
    assert duration(0.0123) == "12.3 ms" and duration(16.66) == "16.7 s"
    assert duration(1480) == "1,480 s (24.7 min)" and "e+" not in duration(1.48e3)
    assert duration(9000) == "9,000 s (2.5 h)"
    assert plural(1, "head group") == "1 head group" and plural(4, "head group") == "4 head groups"


def test_long_tables_are_folded():
    short = tables.table_or_folded([[i] for i in range(tables.MAX_UNFOLDED_ROWS)], ["x"], "s")
    long = tables.table_or_folded([[i] for i in range(tables.MAX_UNFOLDED_ROWS + 1)], ["x"], "many")
    assert short.startswith("<table") and long.startswith("<details><summary>many (9 rows")


def test_dag_image_is_scaled_and_links_the_svg(tmp_path):
    from helixlib.views.dag_images import link_html, write_dag_image

    _, src = teaching_dag_source()
    img = write_dag_image(src, tmp_path / "teach", max_width_px=600)
    w, h = struct.unpack(">II", img.png.read_bytes()[16:24])
    assert img.svg.is_file() and img.dot.is_file()
    assert abs(w - img.width_px) <= 2 and w <= 602 and img.full_width_px > w
    assert f'href="{img.svg.as_posix()}"' in link_html(img) and "% of full size" in link_html(img)


def test_bound_check_finds_a_dataflow_below_perfect_overlap():
    from helixlib.views.design_views import bound_check

    table = {"strategy": np.array(["ring", "helix"])}
    res = {"valid": np.array([True, True]), "time_dataflow": np.array([9.0, 10.0]),
           "time_perfect_overlap": np.array([10.0, 8.0]), "time_no_overlap": np.array([12.0, 12.0]),
           "communication": np.array([10.0, 4.0]), "exposed": np.array([1.0, 2.0]), "compute": np.array([8.0, 8.0])}
    bc = bound_check(table, res)
    assert (bc.below_lower_bound, bc.above_upper_bound, bc.strategies) == (1, 0, ("ring",))
    assert bc.worst_shortfall == pytest.approx(0.1) and bc.hidden_over_compute == pytest.approx(9 / 8)


def test_ring_points_cross_the_node_boundary_at_16():
    from helixlib.views.design_views import ring_points

    pts = ring_points("helix-70b", "dgx-a100", [8, 16, 32], 8192)
    assert [p.nodes for p in pts] == [1, 2, 4]
    assert pts[1].kv_ring > 5 * pts[0].kv_ring  # every ring step now waits for the inter-node link
    # every rank attends L/G queries: compute halves, or a little less (GEMM efficiency falls with the shape)
    assert pts[0].compute / 2 <= pts[1].compute <= 0.6 * pts[0].compute
    assert pts[1].dataflow > pts[0].dataflow


def test_winners_pick_the_fastest_per_cell():
    from helixlib.views.design_views import family, winners

    rows = [{"hardware": "h", "training": False, "seq_len": 1, "world_size": 8, "time_dataflow": t, "best": b}
            for t, b in ((3.0, "ring attention"), (2.0, "helix 2x4 gather_qk"))]
    assert winners(rows, "h", False)[(1, 8)]["best"] == "helix 2x4 gather_qk"
    assert family("helix 2x4 gather_qk") == "helix" and family("head-parallel (helix 8x1)") == "head-parallel"


def test_step_medians_take_the_slowest_rank_per_step():
    from helixlib.runtime.trace import CollectiveEvent, OpEvent, Trace
    from helixlib.views.monitor_plots import step_medians, step_totals

    def trace(rank, op_s, coll_s):
        t = Trace(rank, [CollectiveEvent("c", "all_reduce", "forward", (0, 1), 4, 8, coll_s, 0.0)],
                  [OpEvent("op", "forward", op_s, 0.0)], {"total_s": op_s + coll_s})
        return t

    steps = [[trace(0, 1.0, 0.5), trace(1, 2.0, 0.1)], [trace(0, 5.0, 0.2), trace(1, 1.0, 0.3)],
             [trace(0, 3.0, 0.4), trace(1, 1.0, 0.4)]]
    rows = {r["name"]: r for r in step_medians(steps)}
    assert rows["op"]["median"] == 3.0 and (rows["op"]["min"], rows["op"]["max"]) == (2.0, 5.0)
    assert rows["c"]["median"] == pytest.approx(0.4) and rows["c"]["kind"] == "communication"
    assert step_totals(steps).shape == (3, 2)


def test_rank_map_title_is_singular_for_one_group():
    import matplotlib

    matplotlib.use("Agg")
    from helixlib.views.rankmap import plot_rank_map

    ax = plot_rank_map(build_plan(load_model("helix-tiny"), Partition(1, 16)))
    assert ax.get_title() == "1 head group x 16 dim segments"
    assert len(ax.images) == 1
