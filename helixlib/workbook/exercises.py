"""The workbook's exercises, answered by helixlib (notebooks 00–03; 04–07 in
:mod:`helixlib.workbook.exercises_cost`).

Each notebook poses 2–3 exercises in markdown cells tagged ``exercise``; the cell after each,
tagged ``answer`` and stored with its code collapsed, calls one function here. The function
computes the answer from the workbook's own objects and returns an :class:`Answer`, which a
notebook shows folded ("Answer — click to open"). ``tests/test_exercises.py`` recomputes every
answer another way.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from helixlib.core.units import si
from helixlib.plan import Partition, QkMode, build_plan, load_model
from helixlib.plan.model import layers_for_params
from helixlib.plan.partition import valid_partitions


@dataclass(frozen=True)
class Answer:
    """An exercise's answer: the value, and the reasoning in a sentence or two."""

    value: object
    text: str

    def _repr_html_(self) -> str:
        return f"<details><summary><b>Answer</b> (click to open)</summary><p>{html.escape(self.text)}</p></details>"

    def __repr__(self) -> str:
        return "Answer (folded: open the cell's output)"


# ---- 00 · overview --------------------------------------------------------------------------


def rank_of(model: str, head_groups: int, dim_segments: int, head: int, column: int) -> Answer:
    """Which rank owns ``column`` of ``head``."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    owner = next(s for s in plan.shards if s.heads[0] <= head < s.heads[1]
                 and s.dim_slice[0] <= column < s.dim_slice[1])
    h_g, d_s = plan.model.heads // head_groups, plan.model.head_dim // dim_segments
    return Answer(owner.rank, f"head {head} is in group g = {head} // h_g = {head} // {h_g} = {owner.head_group}; "
                              f"column {column} is in segment s = {column} // d_s = {column} // {d_s} = "
                              f"{owner.dim_segment}; rank = g·m + s = {owner.head_group}·{dim_segments} + "
                              f"{owner.dim_segment} = {owner.rank}.")


def blocks_for(model: str, total_params: float) -> Answer:
    """How many blocks of ``model``'s shape hold ``total_params`` parameters."""
    m = load_model(model)
    n = layers_for_params(total_params, m.hidden, m.mlp_hidden)
    return Answer(n, f"one block holds {m.params_per_block:,} parameters (4D² + 2DF plus biases and LayerNorms); "
                     f"{total_params:.3g} / {m.params_per_block:,} = {total_params / m.params_per_block:.2f}, so "
                     f"{n} blocks.")


def partitions_of(model: str, world_size: int) -> Answer:
    """The n × m the model admits on ``world_size`` GPUs (n | H, m | d)."""
    parts = valid_partitions(load_model(model), world_size)
    names = [f"{p.head_groups}x{p.dim_segments}" for p in parts]
    return Answer(names, f"{len(parts)} ways: {', '.join(names)} (n must divide the {load_model(model).heads} heads "
                         f"and m the head dimension {load_model(model).head_dim}).")


# ---- 01 · partitioning ----------------------------------------------------------------------


def tiny_row(row: int) -> Answer:
    """Row ``row`` of the hand-checkable example: the partial scores, their sum and softmax(S/√d)."""
    from helixlib.views.contraction import tiny_example

    ex = tiny_example()
    parts = [p[row].astype(int).tolist() for p in ex.partial_scores]
    total = ex.scores[row].astype(int).tolist()
    p = ex.probabilities[row]
    return Answer({"partial": parts, "scores": total, "probabilities": [round(float(v), 3) for v in p]},
                  f"S_0[{row}] = {parts[0]}, S_1[{row}] = {parts[1]}, so S[{row}] = {total}; softmax(S/√{ex.d}) = "
                  f"softmax({[v / math.sqrt(ex.d) for v in total]}) = {[round(float(v), 3) for v in p]}.")


def score_message(model: str, head_groups: int, dim_segments: int) -> Answer:
    """Bytes of one head group's score all-reduce, and over all groups, for one layer's forward."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    m = plan.model
    call = next(c for c in plan.collectives if c.name == "scores_allreduce" and c.phase == "forward")
    groups = sum(1 for c in plan.collectives if c.name == "scores_allreduce" and c.phase == "forward")
    return Answer({"per_group": call.bytes, "groups": groups, "total": call.bytes * groups},
                  f"[B, h_g, L, L] = [{m.batch}, {m.heads // head_groups}, {m.seq_len}, {m.seq_len}] × "
                  f"{m.dtype_bytes} bytes = {si(call.bytes, 'B')} per group, {groups} groups: "
                  f"{si(call.bytes * groups, 'B')} per layer, forward (and the same again in backward).")


def rule_of_thumb_for(m: int, dtype_bytes: int, d_s: int, flop_rate: float, bus_bandwidth: float) -> Answer:
    """The all-reduce's time over the score matmul's, for the reader's own hardware figures."""
    from helixlib.views.score_cost import rule_of_thumb

    r = rule_of_thumb(m, dtype_bytes, d_s, flop_rate, bus_bandwidth)
    return Answer(r, f"(m−1)/m · β/d_s · R/busbw = {m - 1}/{m} · {dtype_bytes}/{d_s} · "
                     f"{flop_rate:.3g}/{bus_bandwidth:.3g} = {r:.3g}: the all-reduce takes {r:.3g}× the score matmul.")


# ---- 02 · shape checks ----------------------------------------------------------------------


def scores_on_rank(model: str, head_groups: int, dim_segments: int, rank: int) -> Answer:
    """The shape and size of the scores on ``rank``."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    op = plan.op(rank, "scores")
    return Answer(list(op.output_shape), f"[B, h_g, L, L] = {list(op.output_shape)}: {si(op.bytes, 'B')} moved by "
                                         f"the op (inputs and output); the tensor alone is "
                                         f"{si(math.prod(op.output_shape) * plan.model.dtype_bytes, 'B')}. Every rank "
                                         "of a group holds its heads' FULL scores: only n divides them.")


def collective_counts(model: str, head_groups: int, dim_segments: int, qk_mode: str, output: str) -> Answer:
    """How many collectives rank 0 calls in a forward and in a backward."""
    plan = build_plan(load_model(model), Partition(head_groups, dim_segments, qk_mode, output))
    fwd = plan.collectives_for_rank(0, "forward")
    both = plan.collectives_for_rank(0, None)
    names = ", ".join(c.name for c in fwd)
    return Answer({"forward": len(fwd), "backward": len(both) - len(fwd)},
                  f"{len(fwd)} in forward ({names}) and {len(both) - len(fwd)} in backward, for qk_mode={qk_mode}, "
                  f"output={output}.")


def segment_local_error(model: str, head_groups: int, dim_segments: int) -> Answer:
    """The forward error of the plan's literal per-segment softmax against the dense block (fp64)."""
    from helixlib.runtime.simulate import simulate

    right = simulate(build_plan(load_model(model), Partition(head_groups, dim_segments)), dtype="fp64")
    wrong = simulate(build_plan(load_model(model), Partition(head_groups, dim_segments, QkMode.SEGMENT_LOCAL)),
                     dtype="fp64")
    return Answer(wrong.forward_error, f"segment_local on {head_groups}x{dim_segments}: relative error "
                                       f"{wrong.forward_error:.3g} (reduce_scores: {right.forward_error:.1e}, "
                                       "round-off). Not a precision problem: a different function.")


# ---- 03 · DAG drawings ----------------------------------------------------------------------


def mha_graph_size(model: str, head_groups: int, dim_segments: int) -> Answer:
    """Operators and communication nodes of the attention graph (forward and backward collectives)."""
    from helixlib.dag.graph import build_dag

    plan = build_plan(load_model(model), Partition(head_groups, dim_segments))
    g = build_dag(plan, "mha")
    G = plan.world_size
    ops = g.count("op")
    return Answer({"ops": ops, "comm": g.count("comm")},
                  f"{ops} operator nodes = {ops // G} operators × {G} GPUs; {g.count('comm')} communication "
                  f"nodes: one per process group per communication point ({head_groups} score all-reduces, one "
                  "per head group, plus the world-wide points).")


def segment_local_passes_dag(model: str, head_groups: int, dim_segments: int) -> Answer:
    """segment_local's graph passes every DAG check, yet computes the wrong attention."""
    from helixlib.dag.checks import run_dag_checks
    from helixlib.dag.graph import build_dag

    plan = build_plan(load_model(model), Partition(head_groups, dim_segments, QkMode.SEGMENT_LOCAL))
    checks = run_dag_checks(build_dag(plan, "mha"), plan)
    err = segment_local_error(model, head_groups, dim_segments).value
    ok = all(c.ok for c in checks)
    return Answer({"dag_checks_pass": ok, "forward_error": err},
                  f"all {len(checks)} DAG checks {'pass' if ok else 'do not pass'}, and the forward error is "
                  f"{err:.3g}: the checks see shapes, edges and collectives (structure), not what the softmax "
                  "computes. Only running it against the dense block shows the error.")
