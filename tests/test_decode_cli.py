"""``estimate --phase decode`` from the command line: the JSON fields the issue names, equal to the library;
one-line errors; prefill unchanged; the torch runtime refuses fp8 in one line."""

import json

import pytest
from helpers import run_cli

from helixlib.estimate.decode_estimate import DecodeConfig, decode_estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.plan.model import load_model

BASE = ("estimate", "--phase", "decode", "--model", "helix-paper-llama-405b", "--hardware", "gb200-nvl72",
        "--context", "1048576")


@pytest.mark.parametrize("args,cfg", [
    (("--strategy", "megatron-tp", "--tensor-parallel", "8", "--batch", "2"),
     DecodeConfig("megatron-tp", 8, 1, 2 ** 20, 2)),
    (("--strategy", "helix-kv", "--head-groups", "8", "--kv-shards", "8", "--batch", "16", "--hop-b"),
     DecodeConfig("helix-kv", 8, 8, 2 ** 20, 16, hop_b=True)),
    (("--strategy", "helix", "--head-groups", "8", "--dim-segments", "4", "--batch", "4", "--pipeline-parallel", "2",
      "--kv-dtype", "bf16"), DecodeConfig("helix", 8, 4, 2 ** 20, 4, pipeline=2, kv_dtype="bf16")),
])
def test_json_carries_the_fields_and_equals_the_library(args, cfg):
    r = run_cli(*BASE, *args, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    want = decode_estimate(load_model("helix-paper-llama-405b"), load_cluster("gb200-nvl72"), cfg).to_dict()
    for key in ("ttl_s", "tokens_per_s_per_gpu", "tokens_per_s_per_user", "max_batch"):
        assert d["decode"][key] == pytest.approx(want["decode"][key], rel=1e-12)
    assert d["memory"]["kv_cache_bytes"] == pytest.approx(want["memory"]["kv_cache_bytes"], rel=1e-12)
    assert d["config"]["strategy"] == cfg.strategy and d["config"]["gpus"] == cfg.gpus


def test_tables_name_the_configuration():
    r = run_cli(*BASE, "--strategy", "helix-kv", "--head-groups", "8", "--kv-shards", "8", "--batch", "8")
    assert r.returncode == 0, r.stderr
    assert "helix-kv TP_A 8 x KVP 8 = 64 GPUs" in r.stdout and "token-to-token latency" in r.stdout
    assert "kv cache" in r.stdout


@pytest.mark.parametrize("args,message", [
    (("--strategy", "ring"), "error: strategy: must be one of megatron-tp, helix, helix-kv"),
    (("--strategy", "helix-kv", "--head-groups", "16"), "error: head_groups: helix-kv keeps TP_A <= K"),
    (("--strategy", "helix", "--dim-segments", "3"), "error: dim_segments: must divide both head dims"),
    (("--kv-shards", "0"), "error: kv_shards: must be a positive integer"),
    (("--context", "lots"), "error: context: must be a positive integer"),
    (("--kv-cache", "paged"), "error: kv_cache: must be one of separate, latent"),
    (("--world-size", "8", "--head-groups", "8", "--kv-shards", "8"), "error: world_size: must equal"),
    (("--phase", "decoding"), "error: phase: must be one of prefill, decode"),
    (("--context", "99999999999999999999"), "error: context: must be at most 1,099,511,627,776"),
    (("--kv-shards", "99999999999999999999"), "error: kv_shards: must be at most"),
])
def test_bad_input_is_one_line(args, message):
    r = run_cli(*BASE, *args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr


def test_fp8_on_a100_is_refused_and_prefill_is_unchanged():
    r = run_cli("estimate", "--phase", "decode", "--model", "helix-paper-llama-405b", "--hardware", "dgx-a100")
    assert r.returncode == 2 and "has no matmul peak for it" in r.stderr
    plain = run_cli("estimate", "--json")
    prefill = run_cli("estimate", "--phase", "prefill", "--json")
    assert plain.returncode == prefill.returncode == 0
    assert json.loads(plain.stdout) == json.loads(prefill.stdout)


def test_the_torch_runtime_refuses_fp8_in_one_line():
    r = run_cli("run", "--dtype", "fp8", "-n", "2", "-m", "2")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: dtype: the torch runtime runs fp64, fp32, bf16, fp16 (fp8 is for the estimator), got 'fp8'")
