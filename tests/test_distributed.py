"""The real distributed block: 16 gloo processes on this machine, and torchrun."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import run_cli

from helixlib import Partition, build_plan, factorisations, load_model
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES
from helixlib.runtime.launch import DistributedRunError, launch_local
from helixlib.runtime.run import Fault, RunSpec
from helixlib.views.monitor_plots import collective_bytes, time_breakdown

pytestmark = pytest.mark.slow


def rank_children():
    """Live descendants of this process, not counting multiprocessing's fork server."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and "from multiprocessing." not in " ".join(p.cmdline())]  # fork server, resource tracker


@pytest.fixture(scope="module")
def tiny():
    return load_model("helix-tiny")


@pytest.mark.parametrize("nm", factorisations(16), ids=lambda nm: f"{nm[0]}x{nm[1]}")
def test_every_factorisation_and_variant_matches_dense_and_plan(tiny, nm):
    for qk in QK_MODES:
        for out in OUTPUT_MODES:
            r = launch_local(RunSpec(tiny, Partition(*nm, qk, out), backward=True))
            assert r.collectives_match, r.mismatches
            assert r.comparison.forward_error < 1e-9 and r.comparison.backward_error < 1e-9, (qk, out)
            assert len(r.comparison.backward_errors) == 17  # 16 weights and biases, and x
            assert r.ok


def test_forward_only_and_non_causal(tiny):
    r = launch_local(RunSpec(tiny.replace(causal=False), Partition(2, 8, "gather_qk", "concat"), backward=False))
    assert r.ok and r.comparison.backward_errors == {}
    assert all(c.phase == "forward" for t in r.traces for c in t.collectives)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_low_precision_within_reasoned_tolerance(tiny, dtype):
    r = launch_local(RunSpec(tiny.replace(dtype=dtype), Partition(4, 4), backward=True))
    assert r.ok, r.comparison.to_dict()
    assert r.traces[0].collectives[0].dtype_bytes == {"fp32": 4, "bf16": 2}[dtype]


def test_monitoring_points_are_recorded(tiny):
    plan = build_plan(tiny, Partition(4, 4))
    r = launch_local(RunSpec(tiny, plan.partition, backward=True, warmup=1))
    d = r.to_dict()
    assert set(d["op_seconds"]) == {o.name for o in plan.rank_ops(0)}
    assert all(len(v) == 16 and min(v) > 0 for v in d["op_seconds"].values())
    bytes_by_name = {(c["phase"], c["name"]): c["bytes"] for c in d["collectives"]}
    for c in plan.collectives:  # recorded bytes = plan bytes, summed over the ranks that call it
        assert bytes_by_name[(c.phase, c.name)] >= c.bytes * len(c.ranks)
    assert sum(bytes_by_name.values()) == sum(c.bytes * len(c.ranks) for c in plan.collectives)
    assert len(d["peak_memory_bytes"]) == 16 and min(d["peak_memory_bytes"]) > 10e6
    assert d["timings"]["wall_s"] >= d["timings"]["startup_s"] > 0
    assert all(t["timings"]["forward_s"] > 0 and t["timings"]["backward_s"] > 0 for t in d["traces"])
    labels, planned, recorded = collective_bytes(plan, r)
    assert labels == ["scores_allreduce", "out_proj_allreduce", "fc2_allreduce", "fc1_input.backward",
                      "scores_allreduce.backward", "qkv_input.backward"]
    assert planned == recorded
    parts = time_breakdown(r)
    assert all(len(v) == 16 and (v >= 0).all() for v in parts.values())
    forward = [t.timings["forward_s"] + 1e-6 for t in r.traces]
    assert (parts["forward ops"] + parts["forward collectives"] <= forward).all()


def test_a_raising_rank_fails_fast_with_its_traceback_and_no_orphans(tiny):
    before = {p.pid for p in rank_children()}
    t0 = time.perf_counter()
    with pytest.raises(DistributedRunError) as e:
        launch_local(RunSpec(tiny, Partition(4, 4), fault=Fault(5, "out_proj_allreduce", "raise")))
    assert time.perf_counter() - t0 < 30
    assert e.value.rank == 5
    assert "injected fault on rank 5 before out_proj_allreduce" in str(e.value)
    assert "Traceback" in e.value.rank_traceback and "layer.py" in e.value.rank_traceback
    assert len(e.value.pids) == 16 and not any(psutil.pid_exists(p) and psutil.Process(p).status()
                                               != psutil.STATUS_ZOMBIE for p in e.value.pids)
    assert {p.pid for p in rank_children()} <= before


def test_a_hanging_rank_becomes_an_error_naming_the_collective(tiny):
    t0 = time.perf_counter()
    with pytest.raises(DistributedRunError) as e:
        launch_local(RunSpec(tiny, Partition(4, 4), collective_timeout_s=3,
                             fault=Fault(5, "scores_allreduce", "hang")))
    elapsed = time.perf_counter() - t0
    assert elapsed < 3 + 20  # the collective timeout plus start-up and teardown
    msg = str(e.value)
    # the rank that never arrived, not a bystander that timed out waiting for it
    first = msg.splitlines()[0]
    assert first.startswith("rank 5 never entered forward scores_allreduce (its call 1 of 6, over ranks "
                            "[4, 5, 6, 7]); ranks [") and "timed out waiting for it" in first, msg[:500]
    assert e.value.rank == 5 and "run.py" in e.value.rank_traceback  # the stack it hangs in
    assert "rank 5: before its first collective (scores_allreduce)" in msg
    assert not rank_children()


def test_a_hang_outside_any_timeout_is_caught_by_the_launcher_deadline(tiny):
    with pytest.raises(DistributedRunError) as e:
        launch_local(RunSpec(tiny, Partition(2, 2 * 4), collective_timeout_s=600,
                             fault=Fault(3, "qkv_input.backward", "hang")), timeout_s=12)
    msg = str(e.value)
    assert msg.startswith("no result after 12 s; ranks still running")
    assert "rank 3: in or after backward scores_allreduce.backward (call 5 of 6)" in msg  # stuck before call 6
    assert "run.py" in msg  # the hanging rank's own frame, from faulthandler
    assert not rank_children()


def test_a_crashed_rank_is_reported(tiny):
    with pytest.raises(DistributedRunError, match="rank 2 died with exit code 70"):
        launch_local(RunSpec(tiny, Partition(4, 4), fault=Fault(2, "fc2_allreduce", "crash")))
    assert not rank_children()


def _torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    return str(exe) if exe.exists() else shutil.which("torchrun")


def test_torchrun_standalone_4_ranks_gloo(tmp_path):
    out = tmp_path / "run.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([_torchrun(), "--standalone", "--nproc-per-node", "4", "-m", "helixlib", "run",
                        "--model", "helix-tiny", "-n", "2", "-m", "2", "--backward", "--qk-mode", "gather_qk",
                        "--save", str(out)], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["world_size"] == 4 and d["backend"] == "gloo" and d["collectives_match"] and d["ok"]
    assert d["comparison"]["backward_error"] < 1e-9


def test_torchrun_world_size_mismatch_is_a_clear_error():
    r = subprocess.run([_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "helixlib", "run",
                        "--model", "helix-tiny", "-n", "2", "-m", "2"], capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert "error: world_size: must equal head_groups x dim_segments = 2x2 = 4, got 2" in r.stderr


def test_run_cli_text_and_json(tmp_path):
    r = run_cli("run", "--model", "helix-tiny", "-n", "8", "-m", "2", "--backward", timeout=240)
    assert r.returncode == 0, r.stderr
    assert "collectives_match: true" in r.stdout and "-> ok" in r.stdout and "scores_allreduce" in r.stdout
    r = run_cli("run", "--model", "helix-tiny", "-n", "2", "-m", "8", "--output", "concat", "--json",
                "--save", str(tmp_path / "r.json"), timeout=240)
    d = json.loads(r.stdout)
    assert d["ok"] and d["collectives_match"] and "traces" not in d
    assert len(json.loads((tmp_path / "r.json").read_text())["traces"]) == 16


@pytest.mark.parametrize("args,message", [
    (["--inject-fault", "5:x"], "error: inject_fault: must be RANK:COLLECTIVE:raise|hang|crash"),
    (["--inject-fault", "5:scores_allreduce:explode"], "error: fault.kind: must be one of"),
    (["--collective-timeout", "0"], "error: collective_timeout: must be a number of seconds from 1 to 86400"),
    (["--start-method", "thread"], "error: start_method: must be one of forkserver, fork, spawn"),
    (["--warmup", "-1"], "error: warmup: must be an integer >= 0"),
    (["-n", "3"], "error: head_groups: must divide heads (16), got 3"),
])
def test_run_bad_input(args, message):
    r = run_cli("run", *args, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message), r.stderr
