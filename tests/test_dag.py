"""Operator-level DAGs: built from the plan, checked, drawn with dot, and equal to what ran."""

import copy
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from helpers import run_cli

from helixlib import HelixInputError, Partition, build_plan
from helixlib.dag.checks import run_dag_checks
from helixlib.dag.files import FILES, dag_files, write_dag_files
from helixlib.dag.graph import Edge, build_dag
from helixlib.dag.render import comm_rows, dot_source, fmt_ranks, lanes_top_down
from helixlib.dag.trace import check_drawn_equals_ran, dag_from_traces
from helixlib.dag.views import model_view, stage_view
from helixlib.plan import Op
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES, SEGMENT_LOCAL
from helixlib.runtime.simulate import simulate_ranks

CHECK_NAMES = ["dag_acyclic", "dag_nodes_have_shapes_and_ranks", "dag_edge_shapes_match",
               "dag_collectives_match_plan", "dag_residuals_present", "dag_input_to_output_on_every_rank"]
PARTITIONS = [(4, 4), (2, 8), (8, 2), (1, 16), (16, 1)]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")


def _ok(dag, plan):
    return {c.name: c.ok for c in run_dag_checks(dag, plan)}


@pytest.mark.parametrize("nm", PARTITIONS, ids=lambda nm: f"{nm[0]}x{nm[1]}")
@pytest.mark.parametrize("qk", QK_MODES)
@pytest.mark.parametrize("out", OUTPUT_MODES)
def test_every_check_passes_on_every_section(big, nm, qk, out):
    plan = build_plan(big, Partition(*nm, qk, out))
    for section in ("mha", "mlp", "block"):
        for backward in (True, False):
            results = run_dag_checks(build_dag(plan, section, backward=backward), plan)
            assert [r.name for r in results] == CHECK_NAMES
            assert all(r.ok for r in results), (section, backward, [r for r in results if not r.ok])


def test_the_plans_literal_dataflow_is_a_well_formed_graph(big):
    """segment_local (every segment takes its own softmax: wrong attention) passes every DAG
    check: the checklist is about structure, not maths; the comparison with the dense block
    (simulate, run) is what catches it."""
    plan = build_plan(big, Partition(4, 4, SEGMENT_LOCAL))
    dag = build_dag(plan, "mha")
    assert all(_ok(dag, plan).values())
    assert [n.name for n in dag.nodes.values() if n.kind == "comm"] == ["qkv_input", "out_proj_allreduce"]


def test_counts_follow_from_the_programs(big):
    """Nodes: one per op per rank, one per communication point per group, input, output.
    Edges: one per activation input of every step, plus one per rank into the output."""
    for qk in QK_MODES:
        plan = build_plan(big, Partition(2, 8, qk, "concat"))
        dag = build_dag(plan, "block")
        steps = [s for prog in plan.programs for s in prog]
        n_ops = sum(isinstance(s, Op) for s in steps)
        n_comm = sum(1 / len(s.ranks) for s in steps if not isinstance(s, Op))
        assert (dag.count("op"), dag.count("comm")) == (n_ops, n_comm)
        assert len(dag.nodes) == n_ops + n_comm + 2
        assert len(dag.edges) == sum(len(s.inputs) if isinstance(s, Op) else 1 for s in steps) + plan.world_size


def test_numbers_shown_for_4x4(plan_4x4):
    """The counts the CLI and notebook 03 print for helix-70b 4x4 (reduce_scores, allreduce)."""
    files = dag_files(plan_4x4)
    assert [f.name for f in files] == list(FILES)
    got = [(len(f.graph.nodes), len(f.graph.edges), len(f.view.nodes)) for f in files]
    # mha: 16 x 9 ops + qkv_input + 4 scores_allreduce + out_proj_allreduce + input + output;
    # 15 inputs per rank + 16 into the output. mlp: 16 x 5 ops + fc1_input + fc2_allreduce + 2.
    # model: 87 x (16 x 14 ops + 8 communication nodes) + 2; drawn: 16 x 6 stages + 8 + 1 + 2.
    assert got == [(152, 256, 152), (84, 144, 84), (20186, 32032, 107)]
    assert all(f.ok for f in files)
    # 86 later layers x (16 x 14 operators, 4 scores + out_proj + fc2 forward all-reduces)
    assert files[2].view.nodes["layers"].note == "86 x layer 0: 19264 operators, 516 forward collectives in all"
    # compact, rank 5 expanded: its 9 operators + 15 ranks x 4 stages + 6 communication nodes + 2
    assert len(stage_view(files[0].graph, 5).nodes) == 77


@pytest.mark.parametrize("qk,out,n_comm", [("reduce_scores", "allreduce", 4), ("gather_qk", "allreduce", 6),
                                          ("reduce_scores", "concat", 8), (SEGMENT_LOCAL, "allreduce", 2)])
def test_communication_rows_of_the_variants(big, qk, out, n_comm):
    """Notebook 03 contrasts the variants on 2x2 with these rows: they are the plan's collectives."""
    plan = build_plan(big, Partition(2, 2, qk, out))
    dag = build_dag(plan, "mha")
    rows = comm_rows(dag)
    assert (dag.count("op"), len(rows)) == (36, n_comm)
    words = {"all_reduce": "all-reduce", "all_gather": "all-gather", "reduce_scatter": "reduce-scatter"}
    want = {(c.name.removesuffix(".backward"), c.phase, fmt_ranks(c.ranks), f"{words[c.kind]}, {c.elements:,} el.")
            for c in plan.collectives if c.name.removesuffix(".backward") in {r[0] for r in rows}}
    got = {(r[0], phase, r[3], r[col]) for r in rows for phase, col in (("forward", 4), ("backward", 5))
           if r[col] != "no collective"}
    assert got == want


def test_several_layers_chain_on_each_rank(tiny):
    plan = build_plan(tiny, Partition(4, 4))
    dag = build_dag(plan, "block", layers=3)
    assert all(_ok(dag, plan).values())
    assert dag.count("op") == 3 * 16 * 14
    # layer 1's ln1 on rank 5 reads layer 0's residual2 on rank 5
    assert any(e.src == "l0/r5/residual2" and e.dst == "l1/r5/ln1" for e in dag.edges)
    with pytest.raises(HelixInputError, match="layers"):
        build_dag(plan, "mha", layers=2)
    with pytest.raises(HelixInputError, match="section"):
        build_dag(plan, "attention")


# ------------------------------------------------------------------ each check can fail

def _broken(plan, fn, section="mha"):
    dag = copy.deepcopy(build_dag(plan, section))
    fn(dag)
    return _ok(dag, plan)


def _drop_edge(dag, src, dst):
    n = len(dag.edges)
    dag.edges = [e for e in dag.edges if not (e.src == src and e.dst == dst)]
    assert len(dag.edges) == n - 1


def test_a_cycle_is_caught(plan_4x4):
    got = _broken(plan_4x4, lambda d: d.edges.append(Edge("l0/r0/softmax", "p", "l0/r0/scores", "q", (1,), 0)))
    assert not got["dag_acyclic"]


def test_a_node_without_shapes_or_group_is_caught(plan_4x4):
    def no_shapes(d):
        d.nodes["l0/r3/q_proj"].in_shapes.clear()
    def no_group(d):
        d.nodes["l0/scores_allreduce/4-5-6-7"].group = ""
    assert not _broken(plan_4x4, no_shapes)["dag_nodes_have_shapes_and_ranks"]
    assert not _broken(plan_4x4, no_group)["dag_nodes_have_shapes_and_ranks"]


def test_a_shape_mismatch_or_an_unfed_input_is_caught(plan_4x4):
    def wrong_shape(d):
        d.nodes["l0/r2/softmax"].in_shapes["s"] = (1024, 4, 10000, 128)
    assert not _broken(plan_4x4, wrong_shape)["dag_edge_shapes_match"]
    assert not _broken(plan_4x4, lambda d: _drop_edge(d, "l0/r7/attn_v", "l0/r7/out_proj"))["dag_edge_shapes_match"]


def test_a_missing_extra_or_misplaced_collective_is_caught(plan_4x4):
    def wrong_group(d):
        d.nodes["l0/scores_allreduce/4-5-6-7"].ranks = (4, 5, 6, 8)
    def duplicate(d):
        d.nodes["extra"] = replace(d.nodes["l0/out_proj_allreduce/" + "-".join(map(str, range(16)))], id="extra")
    def no_backward(d):
        d.nodes["l0/scores_allreduce/0-1-2-3"].backward = None
    for fn in (wrong_group, duplicate, no_backward):
        assert not _broken(plan_4x4, fn)["dag_collectives_match_plan"], fn.__name__


def test_a_missing_residual_is_caught(plan_4x4):
    got = _broken(plan_4x4, lambda d: _drop_edge(d, "input", "l0/r9/residual1"))
    assert not got["dag_residuals_present"]
    def unmarked(d):
        d.edges = [replace(e, residual=False) for e in d.edges]
    assert not _broken(plan_4x4, unmarked, "mlp")["dag_residuals_present"]


def test_a_rank_cut_off_from_the_input_is_caught(plan_4x4):
    got = _broken(plan_4x4, lambda d: _drop_edge(d, "input", "l0/r5/ln1"))
    assert not got["dag_input_to_output_on_every_rank"]


# ------------------------------------------------------------------ views

@pytest.mark.parametrize("view", ["stage", "model"])
def test_views_are_contractions_of_the_graph(tiny, view):
    plan = build_plan(tiny, Partition(2, 8, "gather_qk", "concat"))
    full = build_dag(plan, "block", layers=3)
    v = stage_view(full, expand_rank=3) if view == "stage" else model_view(full)
    assert v.topological_order() is not None
    where = {m: vid for vid, n in v.nodes.items() for m in (n.members or (vid,))}
    assert sorted(where) == sorted(full.nodes)  # every full node is in exactly one view node
    induced = {(where[e.src], where[e.dst]) for e in full.edges if where[e.src] != where[e.dst]}
    assert {(e.src, e.dst) for e in v.edges} == induced
    kept = [n for n in v.nodes.values() if n.kind == "op"]
    if view == "stage":
        assert kept and all(n.ranks == (3,) for n in kept)  # rank 3 operator by operator
    else:
        assert not kept and v.nodes["layers"].name == "layers 1-2"


# ------------------------------------------------------------------ files and drawings

def _svg_titles(path):
    ns = {"svg": "http://www.w3.org/2000/svg"}
    return {t.text for t in ET.parse(path).getroot().iterfind(".//svg:g/svg:title", ns)}


@needs_dot
@pytest.mark.parametrize("nm,qk,out", [((4, 4), "reduce_scores", "allreduce"), ((2, 8), "gather_qk", "allreduce"),
                                       ((8, 2), "reduce_scores", "concat")])
def test_files_are_written_parsed_and_rendered(big, tmp_path, nm, qk, out):
    plan = build_plan(big.replace(layers=3), Partition(*nm, qk, out))
    files, missing = write_dag_files(plan, tmp_path, formats=("svg",))
    assert missing is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.{x}" for n in FILES for x in ("dot", "svg"))
    for f in files:
        assert f.ok, [c for c in f.checks if not c.ok]
        dot_path, svg_path = f.written
        r = subprocess.run(["dot", "-Tcanon", str(dot_path)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        titles = _svg_titles(svg_path)  # dot titles every node by id and every edge "a->b"
        assert set(f.view.nodes) <= titles
        assert {f"{e.src}->{e.dst}" for e in f.view.edges} <= titles


@needs_dot
@pytest.mark.parametrize("section", ["mha", "mlp"])
def test_lanes_are_stacked_in_rank_order(big, section):
    for nm in [(4, 4), (2, 8)]:
        plan = build_plan(big, Partition(*nm))
        lanes = lanes_top_down(dot_source(build_dag(plan, section), plan, "g"), plan)
        assert lanes == {g: plan.partition.group_ranks("dim_segment", g * nm[1]) for g in range(nm[0])}


def test_without_dot_the_dot_files_are_written_and_the_command_is_shown(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    plan = build_plan(tiny, Partition(4, 4))
    files, message = write_dag_files(plan, tmp_path / "out", formats=("svg", "png"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{n}.dot" for n in FILES)
    assert "not on PATH" in message and "apt-get install graphviz" in message
    for f in files:
        dot_path = tmp_path / "out" / f"{f.name}.dot"
        assert f"dot -Tsvg {dot_path} -o {dot_path.with_suffix('.svg')}" in message
        assert f"dot -Tpng {dot_path} -o {dot_path.with_suffix('.png')}" in message


def _cli(*args, env=None):
    return run_cli("dag", *args, env=env)


@needs_dot
def test_cli_writes_the_three_drawings_for_the_plan(tmp_path):
    r = _cli("--model", "helix-70b", "--head-groups", "4", "--dim-segments", "4", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[ok]") == 18 and "FAIL" not in r.stdout
    assert "complete_helix_model: 20186 nodes, 32032 edges (drawn: 107 nodes)" in r.stdout
    for name in FILES:
        for ext in ("dot", "svg", "png"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_without_dot_still_writes_dot_files(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path / "no-bin"))
    r = _cli("--model", "helix-tiny", "-n", "2", "-m", "8", "--compact", "--rank", "9", "--formats", "svg",
             "--out", str(tmp_path / "out"), env=env)
    assert r.returncode == 0, r.stderr
    assert "dot -Tsvg" in r.stderr and "mha_layer_0_partitioned.dot" in r.stderr
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".dot"] * 3


@pytest.mark.parametrize("args,message", [
    (["--rank", "16", "--compact"], "error: rank: must be an integer in 0..15, got '16'"),
    (["--rank", "one"], "error: rank: must be an integer in 0..15, got 'one'"),
    (["--formats", "svg,gif"], "error: formats: must be a comma-separated list of svg, png, pdf, got 'svg,gif'"),
    (["-n", "3"], "error: head_groups: must divide heads (16), got 3"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    r = _cli("--model", "helix-tiny", "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == message
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ drawn == ran

@pytest.mark.parametrize("nm,out", [((4, 4), "allreduce"), ((2, 8), "concat"), ((16, 1), "allreduce"),
                                    ((1, 16), "concat")], ids=lambda x: str(x))
@pytest.mark.parametrize("qk", QK_MODES + (SEGMENT_LOCAL,))
def test_the_graph_of_the_run_equals_the_plan_graph(tiny, nm, out, qk):
    plan = build_plan(tiny, Partition(*nm, qk, out))
    _, traces = simulate_ranks(plan, backward=True)
    result = check_drawn_equals_ran(plan, traces)
    assert result.ok, result.detail
    assert dag_from_traces(plan, traces) == build_dag(plan, "block")
    if nm == (4, 4):  # the sizes notebook 03 shows (segment_local: 4 score all-reduces fewer)
        size = {"reduce_scores": "234 nodes, 384 edges", "gather_qk": "238 nodes, 400 edges",
                SEGMENT_LOCAL: "230 nodes, 368 edges"}[qk]
        assert result.detail == f"plan graph == run graph ({size})"


@pytest.mark.slow
@pytest.mark.parametrize("nm,qk,out", [((4, 4), "reduce_scores", "allreduce"), ((2, 8), "gather_qk", "concat")])
def test_the_distributed_run_draws_the_plan_graph(tiny, nm, qk, out):
    """The same comparison on the traces of the real run: 16 gloo processes."""
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    part = Partition(*nm, qk, out)
    result = launch_local(RunSpec(tiny, part, backward=True))
    check = check_drawn_equals_ran(build_plan(tiny, part), result.traces)
    assert check.ok, check.detail


@pytest.fixture(scope="module")
def run_4x4(tiny):
    plan = build_plan(tiny, Partition(4, 4))
    return plan, simulate_ranks(plan, backward=True)[1]


def _perturbed(run, fn):
    plan, traces = run
    traces = copy.deepcopy(traces)
    fn(traces)
    return check_drawn_equals_ran(plan, traces)


def _event(trace, name):
    return next(e for e in trace.ops + trace.collectives if e.name == name)


def test_a_collective_run_after_its_consumer_is_detected(run_4x4):
    def late(traces):
        _event(traces[6], "scores_allreduce").start = _event(traces[6], "attn_v").start + 1e-9
    r = _perturbed(run_4x4, late)
    assert not r.ok and "l0/r6/softmax" in r.detail


def test_a_collective_on_the_wrong_group_or_size_is_detected(run_4x4):
    def wrong_group(traces):
        _event(traces[2], "scores_allreduce").ranks = (0, 1, 2, 4)
    def wrong_size(traces):
        for t in traces:
            _event(t, "fc2_allreduce").elements //= 2
    def forward_only(traces):
        for t in traces:
            t.collectives = [c for c in t.collectives if c.phase == "forward"]
    for fn in (wrong_group, wrong_size, forward_only):
        assert not _perturbed(run_4x4, fn).ok, fn.__name__


def test_a_missing_or_unknown_step_is_detected(run_4x4):
    def missing(traces):
        traces[11].ops = [o for o in traces[11].ops if o.name != "gelu"]
    def unknown(traces):
        traces[0].ops.append(replace(traces[0].ops[-1], name="dropout"))
    assert "l0/r11/gelu" in _perturbed(run_4x4, missing).detail
    assert "dropout" in _perturbed(run_4x4, unknown).detail


def test_forward_only_traces_equal_the_forward_graph_and_survive_json(tiny):
    from helixlib.runtime.trace import Trace

    plan = build_plan(tiny, Partition(8, 2, "gather_qk"))
    _, traces = simulate_ranks(plan, backward=False)
    traces = [Trace.from_dict(t.to_dict()) for t in traces]  # as a distributed run hands them back
    assert check_drawn_equals_ran(plan, traces, backward=False).ok
    assert not check_drawn_equals_ran(plan, traces, backward=True).ok


def test_written_files_have_a_normal_mode(tmp_path):
    import os
    import stat

    from helixlib.core.files import write_text_atomic

    p = write_text_atomic(tmp_path / "x.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert [f.name for f in tmp_path.iterdir()] == ["x.txt"]  # no temporary left behind
