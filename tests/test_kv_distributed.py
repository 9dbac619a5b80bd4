"""KV-sequence shards, grouped-query attention and decoding on 16 real gloo processes (and under
torchrun): a representative set of partitions, each verified against the dense block or dense
decoding, with every rank's recorded collectives equal to the Plan's."""

import json
import os
import subprocess

import pytest
from helpers import run_cli
from test_distributed import _torchrun, rank_children

from helixlib import Partition, load_model
from helixlib.plan import decode_plans
from helixlib.runtime.launch import launch_local
from helixlib.runtime.run import RunSpec

pytestmark = pytest.mark.slow
GQA = load_model("helix-tiny-gqa")


@pytest.mark.parametrize("part,causal", [
    (Partition(4, kv_shards=4), True),
    (Partition(1, kv_shards=16), False),
    (Partition(2, kv_shards=8, kv_placement="contiguous"), True),
    (Partition(8, 2), True),  # head-dim, n = 8 > K = 4: the kv_share groups (dist.new_group) sync K/V
], ids=["4x4kv", "1x16kv-noncausal", "2x8kv-contiguous", "8x2-gqa"])
def test_prefill_forward_backward_on_16_processes(part, causal):
    r = launch_local(RunSpec(GQA.replace(causal=causal), part, backward=True))
    assert r.collectives_match, r.mismatches
    assert r.comparison.forward_error < 1e-9 and r.comparison.backward_error < 1e-9, r.comparison.to_dict()
    assert len(r.comparison.backward_errors) == 19 and r.ok  # 18 weights and biases (SwiGLU), and x
    kinds = {c.kind for t in r.traces for c in t.collectives}
    assert ("all_to_all" in kinds) == part.kv
    assert not rank_children()


@pytest.mark.parametrize("part", [Partition(8, kv_shards=2, kv_placement="contiguous"), Partition(4, 4),
                                  Partition(2, kv_shards=8, hop_b=2)], ids=lambda p: p.label + f"-hop{p.hop_b}")
def test_decode_8_steps_on_16_processes(part):
    r = launch_local(RunSpec(GQA, part, backward=False, phase="decode", steps=8))
    assert r.ok and r.collectives_match, r.mismatches
    assert r.comparison.forward_error < 1e-9
    plans = decode_plans(GQA, r.spec.partition, 8)
    for t in range(8):  # bytes per step measured == Plan, every rank
        measured = sum(c.bytes for tr in r.traces for c in tr.collectives if c.step == t)
        assert measured == sum(c.bytes * len(c.ranks) for c in plans[t].collectives)
    assert all(tr.timings["forward_s"] > 0 for tr in r.traces)


def test_notebook_08s_decode_table_shows_measured_equal_to_plan():
    """The table notebook 08 prints for its real runs: per step, measured bytes == the step's Plan, the
    head-dim split's growing by one key's partial scores per step, the All-to-All's constant."""
    from helixlib.views.kv_report import decode_step_rows

    runs = {"hd": launch_local(RunSpec(GQA, Partition(4, 4), backward=False, phase="decode", steps=3)),
            "kv": launch_local(RunSpec(GQA, Partition(4, kv_shards=4), backward=False, phase="decode", steps=3))}
    rows, header = decode_step_rows(runs)
    assert header == ["step", "cached positions", "hd measured", "hd Plan", "kv measured", "kv Plan"]
    assert [r[1] for r in rows] == [GQA.seq_len, GQA.seq_len + 1, GQA.seq_len + 2]
    assert all(r[2] == r[3] and r[4] == r[5] for r in rows)
    assert rows[0][4] == rows[2][4]  # the KV shards' bytes per step do not grow
    plans = decode_plans(GQA, Partition(4, 4), 3)
    moved = [sum(c.bytes * len(c.ranks) for c in p.collectives) for p in plans]
    assert moved[0] < moved[1] < moved[2]  # the head-dim split's do


def test_bf16_kv_prefill_within_reasoned_tolerance():
    r = launch_local(RunSpec(GQA.replace(dtype="bf16"), Partition(4, kv_shards=4), backward=True))
    assert r.ok, r.comparison.to_dict()
    lse = [c for c in r.traces[0].collectives if c.name == "lse_all_to_all"]
    assert lse[0].dtype_bytes == 4  # the LSE in fp32 beside bf16 partial outputs


def test_run_cli_kv_decode_json():
    r = run_cli("run", "--model", "helix-tiny-gqa", "-n", "4", "--kv-shards", "4", "--phase", "decode", "--steps",
                "8", "--json", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["ok"] and d["collectives_match"] and d["spec"]["phase"] == "decode" and d["spec"]["steps"] == 8
    assert {c["name"] for c in d["collectives"]} == {"o_all_to_all", "lse_all_to_all", "out_proj_allreduce",
                                                     "fc2_allreduce"}
    r = run_cli("run", "--model", "helix-tiny-gqa", "-n", "2", "--kv-shards", "8", "--phase", "decode", "--steps", "2",
                "--hop-b", "2", timeout=300)
    assert r.returncode == 0 and "decode, 2 steps" in r.stdout and "All-to-All blocked" in r.stdout, r.stderr


@pytest.mark.parametrize("args,message", [
    (["--kv-shards", "4", "--phase", "decode", "--backward"], "error: backward: decode steps run forward only"),
    (["--kv-shards", "4", "--steps", "8"], "error: steps: counts decode tokens"),
    (["--kv-shards", "4", "-m", "2"], "error: kv_shards: cannot be combined with dim_segments > 1"),
])
def test_run_bad_combinations(args, message):
    r = run_cli("run", "--model", "helix-tiny-gqa", *args, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message), r.stderr


def test_torchrun_kv_decode_4_ranks(tmp_path):
    out = tmp_path / "run.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([_torchrun(), "--standalone", "--nproc-per-node", "4", "-m", "helixlib", "run",
                        "--model", "helix-tiny-gqa", "-n", "2", "--kv-shards", "2", "--phase", "decode", "--steps", "8",
                        "--save", str(out)], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["world_size"] == 4 and d["backend"] == "gloo" and d["collectives_match"] and d["ok"]
    assert d["comparison"]["forward_error"] < 1e-9
