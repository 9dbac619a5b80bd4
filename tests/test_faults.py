"""Faults of a real local run, as issue 15's review injected them: a killed launcher leaves no
process and no file; the run listens on loopback only; a hang in a mesh sub-group honours the
collective timeout (local launcher and torchrun); Ctrl-C is one line; a fault that cannot fire,
a device that is not there and a size that does not fit are refused before any process starts."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from helixlib import HelixInputError, Partition, load_model
from helixlib.runtime import launch
from helixlib.runtime.launch import DistributedRunError, launch_local
from helixlib.runtime.spec import Fault, RunSpec

pytestmark = pytest.mark.slow

HANG = ["-m", "helixlib", "run", "-n", "2", "-m", "2", "--collective-timeout", "120",
        "--inject-fault", "3:scores_allreduce:hang"]


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _start_hanging_run(tmp_path, *extra):
    """The launcher of a 4-rank run whose rank 3 hangs, once every rank is up: (process, the
    pids of its whole tree: fork server, resource tracker, ranks)."""
    (tmp_path / "tmpdir").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmpdir"))
    # a terminal's process group of its own, and Ctrl-C as a terminal has it: a test run from a
    # background job (make test &) inherits SIGINT ignored, and Python keeps it ignored
    proc = subprocess.Popen([sys.executable, *HANG, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    tree: set[int] = set()
    while time.monotonic() < deadline:
        found = psutil.Process(proc.pid).children(recursive=True)
        tree |= {p.pid for p in found}
        ranks = [p for p in found if _is_rank(p, proc.pid)]
        if len(ranks) == 4 and all(_listening(p.pid) for p in ranks):  # past init_process_group: in the hang
            return proc, tree
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the ranks did not start in 180 s")


def _is_rank(p: psutil.Process, launcher: int) -> bool:
    """Not the fork server itself (a child of the launcher) nor the resource tracker."""
    try:
        cmd = " ".join(p.cmdline())
        return "resource_tracker" not in cmd and not ("multiprocessing.forkserver" in cmd and p.ppid() == launcher)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig,start_method", [(signal.SIGTERM, "forkserver"), (signal.SIGKILL, "forkserver"),
                                              (signal.SIGKILL, "fork")])
def test_a_killed_launcher_leaves_no_process_and_no_file(tmp_path, sig, start_method):
    proc, tree = _start_hanging_run(tmp_path, "--start-method", start_method)
    assert len(tree) >= 4  # the ranks (and, with forkserver, the server and the resource tracker)
    proc.send_signal(sig)
    proc.wait(30)
    deadline = time.monotonic() + 10
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(tree), [psutil.Process(p).cmdline() for p in _alive(tree)]
    assert not list((tmp_path / "tmpdir").iterdir())  # no helix-stacks-* folder, no file
    assert proc.returncode == -sig if sig == signal.SIGKILL else proc.returncode == 128 + signal.SIGTERM


def _listening(pid: int) -> list:
    try:
        return [c.laddr for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        return []


def test_the_run_listens_on_loopback_only_and_ctrl_c_is_one_line(tmp_path):
    proc, tree = _start_hanging_run(tmp_path, "--json")  # --json: no progress lines on stderr
    sockets = {pid: _listening(pid) for pid in [proc.pid, *tree]}
    assert sockets[proc.pid], "the launcher serves the rendezvous store"
    outside = {pid: [a for a in s if a.ip not in ("127.0.0.1", "::1")] for pid, s in sockets.items()}
    assert not any(outside.values()), outside
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, as in a terminal
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "error: interrupted\n" and out == "", err[-3000:]
    deadline = time.monotonic() + 10
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(tree)


@pytest.fixture(scope="module")
def tiny():
    return load_model("helix-tiny")


def test_a_hang_in_a_mesh_sub_group_honours_the_collective_timeout(tiny):
    """o_gather_groups runs on the head_group sub-group DeviceMesh creates: without the run's
    timeout on it, gloo waits 30 minutes and only the launcher's deadline ends the run."""
    t0 = time.perf_counter()
    with pytest.raises(DistributedRunError) as e:
        launch_local(RunSpec(tiny, Partition(2, 2, output="concat"), backward=True, collective_timeout_s=3,
                             fault=Fault(0, "o_gather_groups.backward", "hang")), timeout_s=600)
    assert time.perf_counter() - t0 < 3 + 60  # the timeout, start-up and teardown on a busy 2-core machine
    first = str(e.value).splitlines()[0]
    assert first.startswith("rank 0 never entered backward o_gather_groups.backward"), first
    assert e.value.rank == 0 and "run.py" in e.value.rank_traceback  # the stack it hangs in


def test_a_sub_group_hang_under_torchrun_fails_in_seconds(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    t0 = time.perf_counter()
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "4", "-m", "helixlib", "run", "-n", "2",
                        "-m", "2", "--output", "concat", "--backward", "--collective-timeout", "3",
                        "--inject-fault", "0:o_gather_groups.backward:hang"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode != 0
    assert time.perf_counter() - t0 < 120  # was > 150 s with nothing printed
    assert "o_gather_groups.backward" in r.stderr and "failed after 3.0 s" in r.stderr


def test_faults_that_cannot_fire_are_refused_before_any_process(tiny):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    for fault, message in [(Fault(99, "scores_allreduce"), "fault.rank: must be a rank of the run, 0..3"),
                           (Fault(0, "no_such_collective"), "fault.at: rank 0 calls no such collective"),
                           (Fault(0, "scores_allreduce.backward"), "(forward only)")]:
        with pytest.raises(HelixInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            launch_local(RunSpec(tiny, Partition(2, 2), backward=False, fault=fault))
    with pytest.raises(HelixInputError, match="fault.rank: must be an integer >= 0"):
        Fault(-1, "scores_allreduce")
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_auto_never_puts_two_local_ranks_on_one_gpu(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    spec = RunSpec(tiny, Partition(2, 2))
    assert launch._local_device(spec, 4) == "cpu"  # 4 ranks, 2 GPUs: the CPU
    assert launch._local_device(spec, 2) == "cuda"  # one GPU each
    with pytest.raises(HelixInputError, match="cuda needs one GPU per rank: 4 ranks on this machine, 2 GPUs"):
        launch._local_device(RunSpec(tiny, Partition(2, 2), device="cuda"), 4)


def test_timeouts_are_finite_seconds_within_range(tiny):
    for bad in (float("nan"), float("inf"), 1e300, 1e-9, 0, -1, "soon"):
        with pytest.raises(HelixInputError, match="collective_timeout_s: must be a number of seconds"):
            RunSpec(tiny, Partition(2, 2), collective_timeout_s=bad)
        with pytest.raises(HelixInputError, match="timeout_s: must be a number of seconds"):
            launch_local(RunSpec(tiny, Partition(2, 2)), timeout_s=bad)
