"""The whole training step: pipeline schedule, data parallelism, optimizer, FLOPs as the papers count
them, memory per stage, and the command line for every strategy."""

import json

import pytest
from helpers import run_cli

from helixlib import HelixInputError
from helixlib.estimate.flops import hardware_flops, model_flops
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.step import Parallel, estimate_step
from helixlib.plan.model import ModelConfig

A100 = load_cluster("dgx-a100")
GPT175 = ModelConfig("gpt-175b", 12288, 96, 4 * 12288, 2048, 1, 96, dtype="fp16", vocab=51200, dropout=0.1)


def test_model_flops_are_korthikantis_eq7_and_narayanans_eq3_with_recompute():
    B, L, s, h, V = 64, 96, 2048, 12288, 51200
    eq7 = 72 * B * L * s * h * h * (1 + s / (6 * h) + V / (12 * h * L))
    assert model_flops(GPT175, B) == pytest.approx(eq7, rel=1e-12)
    eq3 = 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))  # counts the recomputed forward
    assert hardware_flops(GPT175, B, "full") == pytest.approx(eq3, rel=1e-12)
    sel = hardware_flops(GPT175, B, "selective") - model_flops(GPT175, B)
    assert sel == pytest.approx(B * L * 4 * s * s * h)  # QK^T and P.V once more
    assert hardware_flops(GPT175, B, "none", causal_skip=True) < model_flops(GPT175, B)


@pytest.fixture(scope="module")
def k175():
    """Korthikanti et al.'s 175B run (Table 3): t 8, p 8, 64 micro-batches, 3 chunks per stage."""
    return estimate_step(GPT175, Parallel("megatron-sp", 8, 8, 1, 1, 64, 3, "selective"), A100)


def test_the_pipeline_is_m_stage_times_plus_the_interleaved_bubble(k175):
    e = k175
    m, v, st = 64, 3, e.stage_s
    assert e.pipeline_s == pytest.approx(m * max(st) + (sum(st) - max(st)) / v)
    assert e.bubble_s == pytest.approx((sum(st) - max(st)) / v)
    layers = 12
    assert st[1] == pytest.approx(layers * float(e.block.dataflow_s) + e.p2p_s)
    assert st[0] > st[1] and st[-1] > st[1]  # the embedding, and the logits with the loss
    assert e.time_s == pytest.approx(e.pipeline_s + e.dp_exposed_s + e.embedding_sync_s + e.optimizer_s)
    assert e.dp_s == 0 and e.optimizer_s > 0 and e.embedding_sync_s > 0


def test_mfu_is_model_flops_over_time_gpus_and_peak(k175):
    e = k175
    assert e.mfu == pytest.approx(model_flops(GPT175, 64) / (e.time_s * 64 * 312e12))
    assert e.hfu > e.mfu and 0.4 < e.mfu < 0.7
    assert e.memory.fits  # the paper ran it on 80 GB A100s


def test_data_parallelism_adds_the_gradient_reduction_unless_it_overlaps():
    base = Parallel("megatron-sp", 8, 8, 4, 1, 256, 3, "selective")
    plain = estimate_step(GPT175, base, A100)
    assert plain.dp_exposed_s == plain.dp_s > 0
    hidden = estimate_step(GPT175, Parallel(**{**vars(base), "dp_overlap": True}), A100)
    assert hidden.dp_exposed_s < plain.dp_exposed_s and hidden.time_s < plain.time_s
    zero1 = estimate_step(GPT175, Parallel(**{**vars(base), "zero": 1}), A100)
    assert zero1.memory.optimizer == pytest.approx(plain.memory.optimizer / 4)
    assert zero1.optimizer_s == pytest.approx(plain.optimizer_s / 4, rel=0.01)


def test_full_recompute_keeps_block_inputs_and_costs_a_forward():
    full = estimate_step(GPT175, Parallel("megatron-tp", 8, 8, 1, 1, 64, 3, "full"), A100)
    none = estimate_step(GPT175, Parallel("megatron-tp", 8, 8, 1, 1, 64, 3, "none"), A100)
    assert full.memory.activations < none.memory.activations / 5
    assert float(full.block.backward_s - none.block.backward_s) == pytest.approx(float(none.block.forward_s), rel=0.05)


@pytest.mark.parametrize("change,message", [
    (dict(tensor=5), "tensor_parallel: must divide the heads"),
    (dict(pipeline=7), "pipeline: pipeline x virtual must divide the layers (96)"),
    (dict(data=2, global_batch=65), "global_batch: must be a multiple of micro_batch x data (2)"),
    (dict(virtual=2, global_batch=4), "global_batch: interleaving needs micro-batches"),
    (dict(zero=3), "zero: must be 0, 1 or 2"),
    (dict(recompute="some"), "recompute: must be one of none, selective, full"),
    (dict(strategy="fsdp"), "strategy: must be one of helix, megatron-tp, megatron-sp, ulysses, ring"),
])
def test_bad_parallel_settings_are_one_error_naming_the_field(change, message):
    base = dict(strategy="megatron-sp", tensor=8, pipeline=8, data=1, micro_batch=1, global_batch=64, virtual=1)
    with pytest.raises(HelixInputError) as err:
        estimate_step(GPT175, Parallel(**(base | change)), A100)
    assert str(err.value).startswith(message)


# ---- the command line --------------------------------------------------------------------


FIELDS = [("per_layer", "forward_s"), ("per_layer", "backward_s"), ("per_step", "time_s"),
          ("per_step", "model_tflops_per_gpu"), ("per_step", "hardware_tflops_per_gpu"), ("per_step", "mfu"),
          ("memory", "total_bytes"), ("memory", "fits")]


@pytest.mark.parametrize("strategy,extra", [
    ("megatron-sp", ["--tensor-parallel", "8", "--pipeline-parallel", "4", "--data-parallel", "8",
                     "--global-batch", "1536", "--recompute", "selective", "--zero", "1"]),
    ("megatron-tp", ["--tensor-parallel", "8", "--pipeline-parallel", "2", "--recompute", "full", "--flash"]),
    ("helix", ["-n", "4", "-m", "2", "--pipeline-parallel", "2"]),
    ("ulysses", ["--tensor-parallel", "8", "--pipeline-parallel", "2", "--flash"]),
    ("ring", ["--tensor-parallel", "8", "--pipeline-parallel", "2"]),
])
def test_estimate_answers_every_strategy_with_the_json_fields(tmp_path, strategy, extra):
    model = tmp_path / "m.yaml"
    model.write_text("name: m\nhidden: 4096\nheads: 32\nmlp_hidden: 16384\nseq_len: 4096\nbatch: 1\nlayers: 32\n"
                     "vocab: 50304\ndropout: 0.1\n")
    r = run_cli("estimate", "--strategy", strategy, *extra, "--micro-batch", "1", "--model", str(model),
                "--hardware", "dgx-h100", "--training", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for group, key in FIELDS:
        assert key in d[group], (group, key)
    assert d["parallel"]["strategy"] == strategy and d["per_step"]["time_s"] > d["per_layer"]["forward_s"] > 0
    assert 0 < d["per_step"]["mfu"] < 1 and isinstance(d["memory"]["fits"], bool)


def test_estimate_step_text_and_the_old_helix_estimate_still_work():
    r = run_cli("estimate", "--strategy", "megatron-sp", "--tensor-parallel", "8", "--pipeline-parallel", "8",
                "--global-batch", "64", "--recompute", "selective", "--model", "gpt3-175b", "--training")
    assert r.returncode == 0, r.stderr
    assert "MFU" in r.stdout and "verdict: fits" in r.stdout
    r = run_cli("estimate", "-n", "4", "-m", "4", "--training", "--recompute", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["options"]["recompute"] is True


@pytest.mark.parametrize("args,line", [
    (["--hardware", "a100-sxm4-80gb"], "error: hardware: a100-sxm4-80gb is a device preset, not a cluster; "
                                       "use a cluster built from it (dgx-a100)"),
    (["--strategy", "zero-bubble"], "error: strategy: must be one of helix, megatron-tp"),
    (["--strategy", "megatron-sp", "--tensor-parallel", "7"], "error: tensor_parallel: must divide the heads"),
    (["--recompute", "selective"], "error: recompute: selective recompute is priced for a training step"),
    (["--strategy", "megatron-sp", "--recompute", "half"], "error: recompute: must be one of none, selective, full"),
])
def test_bad_estimate_input_is_one_line(args, line):
    r = run_cli("estimate", "--model", "gpt3-175b", *args)
    assert r.returncode == 2 and r.stderr.startswith(line), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
