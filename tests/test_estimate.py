"""The estimator reads the Plan: its FLOPs, its collectives and their placement on nodes."""

import dataclasses
import json

import numpy as np
import pytest
from helpers import run_cli

from helixlib import HelixInputError, Partition, build_plan, factorisations
from helixlib.core.numbers import divisors
from helixlib.estimate.estimator import Options, estimate, memory_for_batch, model_flops_per_block
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.memory import stored_bytes
from helixlib.estimate.workload import program_from_plan


@pytest.fixture(scope="module")
def a100():
    return load_cluster("dgx-a100")


@pytest.fixture(scope="module")
def est44(plan_4x4, a100):
    return estimate(plan_4x4, a100)


def test_op_flops_and_bytes_are_the_plans(plan_4x4, est44):
    ops = {o.name: o for o in plan_4x4.rank_ops(est44.rank)}
    rows = est44.op_rows()
    assert [r["name"] for r in rows] == list(ops)
    for r in rows:
        assert (r["flops"], r["bytes"]) == (ops[r["name"]].flops, ops[r["name"]].bytes)
    d = est44.to_dict()
    assert d["flops"]["plan_matmul_per_rank"] == plan_4x4.rank_flops(0, "matmul")
    assert d["flops"]["forward_per_rank"] == plan_4x4.rank_flops(0)


def test_model_flops_are_the_sum_over_ranks_of_the_plans_matmuls(big):
    for n, m in factorisations(16):
        plan = build_plan(big, Partition(n, m))
        assert sum(plan.rank_flops(r, "matmul") for r in range(16)) == model_flops_per_block(big)


def test_collectives_are_the_plans_forward_ones(plan_4x4, est44):
    want = [(c.name, c.kind, len(c.ranks), c.bytes) for c in plan_4x4.collectives_for_rank(est44.rank, "forward")]
    got = [(r["name"], r["kind"], r["group_size"], r["bytes"]) for r in est44.collective_rows()]
    assert got == want


def test_a_group_spanning_nodes_is_slower_than_one_inside_a_node(plan_4x4, a100):
    """The 4-rank dim_segment group: inside a 4-GPU node, or split over two 2-GPU nodes."""
    inside = estimate(plan_4x4, dataclasses.replace(a100, gpus_per_node=4))
    across = estimate(plan_4x4, dataclasses.replace(a100, gpus_per_node=2))
    scores = lambda e: next(r for r in e.collective_rows() if r["name"] == "scores_allreduce")
    assert (scores(inside)["nodes"], scores(across)["nodes"]) == (1, 2)
    assert scores(across)["time_s"] > 2 * scores(inside)["time_s"]
    assert across.per_layer["time_dataflow"] > inside.per_layer["time_dataflow"]


def test_whole_nodes_only(plan_4x4, a100):
    with pytest.raises(HelixInputError, match="world_size: must fill whole nodes of 6"):
        estimate(plan_4x4, dataclasses.replace(a100, gpus_per_node=6))


def test_bounds_are_ordered_and_training_adds_the_backward(plan_4x4, a100):
    fwd = estimate(plan_4x4, a100, micro_batch=1)
    train = estimate(plan_4x4, a100, training=True, micro_batch=1)
    redo = estimate(plan_4x4, a100, training=True, recompute=True, micro_batch=1)
    for e in (fwd, train, redo):
        p = e.per_layer
        assert p["time_perfect_overlap"] <= p["time_dataflow"] <= p["time_no_overlap"]
    assert train.timing.compute_s == pytest.approx(3 * fwd.timing.compute_s)
    assert redo.timing.compute_s == pytest.approx(4 * fwd.timing.compute_s)
    runs = lambda e: sorted({r["run"] for r in e.collective_rows()})
    assert runs(fwd) == ["forward"] and runs(train) == ["backward", "forward"]
    assert runs(redo) == ["backward", "forward", "recompute"]
    # the input-gradient all-reduces hide partly behind the weight-gradient GEMMs
    rows = {r["name"]: r for r in train.collective_rows()}
    assert 0 < rows["qkv_input.backward"]["exposed_s"] < rows["qkv_input.backward"]["time_s"]
    assert rows["scores_allreduce.backward"]["exposed_s"] == rows["scores_allreduce.backward"]["time_s"]


def test_mfu_is_model_flops_over_time_and_peak(plan_4x4, a100, est44):
    t = est44.per_model["time_dataflow"]
    want = model_flops_per_block(plan_4x4.model) * plan_4x4.model.layers / (t * 16 * 312e12)
    assert est44.mfu["dataflow"] == pytest.approx(want)
    assert 0 < est44.mfu["no_overlap"] <= est44.mfu["dataflow"] <= est44.mfu["perfect_overlap"] < 1


def test_micro_batches_repeat_the_block(plan_4x4, a100):
    e = estimate(plan_4x4, a100, micro_batch=32)
    assert e.micro_steps == 32
    assert e.to_dict()["flops"]["forward_per_rank"] == plan_4x4.rank_flops(0)
    with pytest.raises(HelixInputError, match="micro_batch: must divide the batch"):
        estimate(plan_4x4, a100, micro_batch=3)


# ---- memory -----------------------------------------------------------------------------


def test_replicated_tensors_are_not_divided_over_ranks(big, a100):
    """x, h1, x1, h2 are [B, L, D] on every rank, whatever n and m (not the plan's '16x reduction')."""
    full = big.batch * big.seq_len * big.hidden * 2
    for n, m in [(4, 4), (16, 1), (1, 16)]:
        prog = program_from_plan(build_plan(big, Partition(n, m)), 0, a100)
        assert [prog.sizes[t] for t in ("x", "h1", "x1", "h2")] == [full] * 4
        assert {"x", "h1", "x1", "h2"} <= {t for op in prog.ops for t in op.saves}


def test_score_memory_divides_by_n_not_by_G(big, a100):
    score = lambda n, m: program_from_plan(build_plan(big, Partition(n, m)), 0, a100).sizes["p"]
    assert score(4, 4) == big.batch * (16 // 4) * big.seq_len ** 2 * 2
    assert score(4, 4) == score(4, 1) == 4 * score(16, 1) == score(1, 16) / 4


def test_flash_and_recompute_save_memory(plan_4x4, a100):
    mem = lambda **kw: memory_for_batch(plan_4x4, a100, Options(**kw), 1)
    layers, L, D = 87, 10000, 8192
    score, lse, x = 4 * L * L * 2, 4 * L * 4, L * D * 2  # p [1, h_g, L, L] bf16; fp32 lse; block input
    plain = mem(training=True)
    # flash keeps the fp32 log-sum-exp instead of the probabilities, in every layer
    assert plain.activations - mem(training=True, flash=True).activations == layers * (score - lse)
    # full recompute keeps each block's input, plus one block's activations while it is rebuilt
    assert mem(training=True, recompute=True).activations == layers * x + plain.activations / layers
    assert mem(flash=True).working < mem().working / 2
    # training keeps 16 bytes per parameter (bf16 weights and grads, fp32 Adam and master)
    assert plain.weights + plain.gradients + plain.optimizer == pytest.approx(8 * plain.weights)


def test_training_state_and_stored_activations_formula(plan_4x4, a100):
    m = plan_4x4.model
    prog = program_from_plan(build_plan(m.replace(batch=1), plan_4x4.partition), 0, a100)
    T, D, F = m.seq_len, m.hidden, m.mlp_hidden // 16
    # x, h1, x1, h2 replicated; q, k, v, o at h_g·d_s = 512 wide; p [1, 4, L, L]; u, z at F/G
    want = 2 * (4 * T * D + 4 * T * 512 + 4 * T * T + 2 * T * F)
    assert stored_bytes(prog) == want
    # Korthikanti et al. (tensor parallel t) without dropout: L·B·D·(8 + 24/t) + 2·H·L²·B/t, with t -> n for scores
    assert stored_bytes(prog) == T * D * (8 + 24 / 16) + 2 * (16 / 4) * T * T


def test_largest_micro_batch_fits_and_the_next_does_not(plan_4x4, a100, est44):
    b = est44.largest_micro_batch
    assert b == 32 and not est44.memory.fits
    ds = divisors(plan_4x4.model.batch)
    assert memory_for_batch(plan_4x4, a100, Options(), b).fits
    assert not memory_for_batch(plan_4x4, a100, Options(), ds[ds.index(b) + 1]).fits


def test_70b_training_on_16_gpus_does_not_fit_even_one_sequence(plan_4x4, a100):
    e = estimate(plan_4x4, a100, training=True, recompute=True, flash=True, micro_batch=1)
    assert e.largest_micro_batch is None and not e.memory.fits
    assert e.memory.weights + e.memory.gradients + e.memory.optimizer > 0.8 * e.memory.capacity


# ---- command line -----------------------------------------------------------------------


def cli(*args):
    return run_cli("estimate", *args)


def test_estimate_json_helix_70b_4x4_a100():
    r = cli("--model", "helix-70b", "-n", "4", "-m", "4", "--hardware", "dgx-a100", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"ops", "collectives", "per_layer", "per_model", "mfu", "memory", "communication_share", "flops"} <= set(d)
    assert d["memory"]["verdict"] == "does not fit" and d["memory"]["largest_micro_batch"] == 32
    assert d["per_model"]["time_dataflow"] == pytest.approx(87 * d["per_layer"]["time_dataflow"])
    op_time = sum(o["forward_s"] for o in d["ops"])
    assert d["per_layer"]["compute"] == pytest.approx(op_time)
    share = d["communication_share"]["all_of_no_overlap_time"]
    assert share == pytest.approx(d["per_layer"]["communication"] / d["per_layer"]["time_no_overlap"])
    assert share > 0.05  # the plan claims "< 5 %"


def test_estimate_text_and_bad_input():
    r = cli("--training", "--flash", "--micro-batch", "1")
    assert r.returncode == 0 and "verdict: does NOT fit" in r.stdout and "flash_attention" in r.stdout
    bad = cli("--micro-batch", "3")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: micro_batch: must divide the batch (1024), got 3"


def test_a_measured_cpu_preset_drives_the_estimate(tmp_path):
    """What ``calibrate`` will write: one 16-rank 'node', measured matmul points and collective fits."""
    import yaml

    from helixlib import load_model

    fit = lambda a, bw: {"alpha_s": a, "busbw": bw}
    raw = {
        "kind": "cluster", "name": "cpu-16", "gpus_per_node": 16, "base_latency_s": 0, "communicator_bytes": 0,
        "intra_node": {"bandwidth": 1e9, "efficiency": 1, "hop_latency_s": 0},
        "inter_node": {"bandwidth": 1e9, "efficiency": 1, "hop_latency_s": 0},
        "collectives": {"all_reduce": {4: fit(1e-4, 2e8), 16: fit(5e-4, 1e8)}},
        "source": "measured on this machine (test)",
        "device": {"kind": "device", "name": "cpu", "memory_bytes": 8e9, "reserved_bytes": 0,
                   "matmul_flops": {"fp32": 1e11}, "vector_flops": 1e10, "memory_bandwidth": 1e10,
                   "matmul_efficiency": 1, "matmul_half_dim": 0, "memory_efficiency": 1, "flash_efficiency": 0.5,
                   "launch_overhead_s": 0, "matmul_measured": {"fp32": [[512, 1024, 64, 2e9], [1024, 1024, 256, 5e9]]},
                   "source": "measured on this machine (test)"},
    }
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    cpu = load_cluster(path)
    plan = build_plan(load_model("helix-small"), Partition(4, 4))
    e = estimate(plan, cpu)
    rows = {r["name"]: r for r in e.collective_rows()}
    S = rows["scores_allreduce"]["bytes"]
    assert rows["scores_allreduce"]["time_s"] == pytest.approx(1e-4 + S * 1.5 / 2e8)
    S = rows["fc2_allreduce"]["bytes"]
    assert rows["fc2_allreduce"]["time_s"] == pytest.approx(5e-4 + S * 2 * 15 / 16 / 1e8)
    q = next(r for r in e.op_rows() if r["name"] == "q_proj")  # [1024, 1024]·[1024, 64], between the two points
    d2 = np.array([np.log(2) ** 2, np.log(4) ** 2])  # squared log-distances to (512, 1024, 64), (1024, 1024, 256)
    w = 1 / d2 ** 2  # inverse distance^4
    flops = np.exp((w * np.log([2e9, 5e9])).sum() / w.sum())
    assert 2e9 < flops < 2.5e9  # mostly the nearer point's figure
    assert q["efficiency"] == pytest.approx(flops / 1e11)
    assert q["forward_s"] == pytest.approx(q["flops"] / flops)
