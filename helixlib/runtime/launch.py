"""Launching ranks: a local launcher for CPU processes, and the torchrun entry.

Local launcher (``launch_local``):

* checks first, before any process: the Plan, the injected fault (it must be able to fire), the
  device (``cuda`` needs one GPU per rank; ``auto`` takes CUDA only then), the number of
  processes (at most :data:`MAX_LOCAL_RANKS`) and the memory the run needs against what this
  machine has available;
* start: ``forkserver`` with torch and helixlib preloaded — the server imports torch once
  and forks every rank from a process that never started a thread (plain ``fork`` from a
  process that ran torch ops can deadlock gloo; ``spawn`` re-imports torch in every rank:
  measured here, 16 ranks on 2 cores start in ~2.4 s, ~0.6 s and ~33 s;
  ``benchmarks/bench_launch.py``);
* rendezvous: a TCPStore the launcher serves on a socket bound to 127.0.0.1 (a master
  TCPStore given only a host name listens on every interface), port chosen by the kernel
  (port 0: nothing to race for, so no "address in use"); gloo bound to loopback;
* supervision (:mod:`helixlib.runtime.supervise`): every rank reports its traceback on
  failure; the launcher stops all ranks at the first failure, turns a hang into an error
  naming the rank that never arrived (process-group timeout inside the ranks, an overall
  deadline outside, stacks of stuck ranks via faulthandler) and leaves no process and no file
  behind, also when it is killed (:mod:`helixlib.runtime.rank_process`). SIGTERM stops the
  ranks and exits (status 143); Ctrl-C stops them and raises KeyboardInterrupt.

As with any ``multiprocessing`` program, a script that calls ``launch_local`` must do so
under ``if __name__ == "__main__":`` (forkserver and spawn import the main module in
every rank). Notebooks and ``python -m helixlib run`` need nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager

from helixlib.core.errors import HelixInputError, bounded_number, one_of
from helixlib.plan import build_plan
from helixlib.runtime.run import RunResult, RunSpec, rank_main
from helixlib.runtime.session import check_device
from helixlib.runtime.spec import MAX_LOCAL_RANKS, START_METHODS, TIMEOUT_RANGE_S, check_local_run
from helixlib.runtime.supervise import DistributedRunError, LocalRanks

__all__ = ["MAX_LOCAL_RANKS", "START_METHODS", "DistributedRunError", "launch_local", "run_torchrun",
           "torchrun_env"]

# Imported once in the fork server. symbolic_shapes (and sympy under it) is imported
# lazily by the first backward(): ~4 s per rank on 2 cores if every rank does it.
_PRELOAD = ["torch", "torch.distributed", "torch.distributed.device_mesh", "torch.fx.experimental.symbolic_shapes",
            "helixlib.runtime.launch", "helixlib.runtime.layer"]


def _local_device(spec: RunSpec, world: int) -> str:
    """The device the local ranks use: ``cuda`` only with a GPU for every rank (``auto`` falls
    back to the CPU; several ranks on one GPU would contend for it and NCCL refuses it)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec.device == "cuda":
        check_device("cuda", world)
    return "cuda" if spec.device == "cuda" or (spec.device == "auto" and gpus >= world) else "cpu"


def _loopback_store():
    """A master TCPStore listening on 127.0.0.1 only, on a port the kernel picks."""
    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        store = dist.TCPStore("127.0.0.1", sock.getsockname()[1], is_master=True, wait_for_workers=False,
                              master_listen_fd=sock.fileno())
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store owns the descriptor now (and closes it)
    return store


@contextmanager
def _exit_on_sigterm():
    """While ranks run, SIGTERM ends the launcher through its cleanup (SystemExit(143)), not
    around it. Only where SIGTERM has its default action (an ignored or handled SIGTERM is left
    as it is) and in the main thread (signal handlers belong to it)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch_local(spec: RunSpec, start_method: str = "forkserver", timeout_s: float | None = None,
                 log=None, rank_fn=rank_main) -> RunResult:
    """Run ``spec`` on n·m local processes; return rank 0's RunResult with
    ``timings`` (startup_s: launch until every rank reported in; wall_s: launch to result).
    Raises HelixInputError before starting anything when the run cannot work (see the module
    docstring), DistributedRunError on any rank failure, hang or overall timeout.

    ``rank_fn(spec, rank, world_size, local_rank, store_port, progress)`` is what each rank
    runs (default :func:`helixlib.runtime.run.rank_main`; benchmarks pass their own, which
    must be importable: a module-level function)."""
    one_of("start_method", start_method, START_METHODS)
    if not isinstance(spec, RunSpec):
        raise HelixInputError("spec", "must be a RunSpec", type(spec).__name__)
    plan = build_plan(spec.model, spec.partition, phase=spec.phase)  # bad input fails here, before any process
    spec = dataclasses.replace(spec, device=_local_device(spec, plan.world_size))
    check_local_run(spec, plan)
    timeout_s = 120 + 3 * spec.collective_timeout_s if timeout_s is None else \
        bounded_number("timeout_s", timeout_s, *TIMEOUT_RANGE_S, "seconds")
    log = log or (lambda msg: None)

    t0 = time.perf_counter()
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD + ["helixlib.runtime.fork_server"])
    elif start_method == "fork":  # forked ranks inherit what this process has imported
        for module in _PRELOAD:
            importlib.import_module(module)
    ranks = LocalRanks(ctx, spec, plan, rank_fn)
    with _exit_on_sigterm():
        try:
            ranks.start()
            # The store's server thread starts only now: a process forked while it ran could
            # inherit a held lock (the fork-after-threads deadlock).
            store = _loopback_store()
            ranks.port.value = store.port
            log(f"launched {plan.world_size} ranks ({start_method}), store 127.0.0.1:{store.port}")
            startup_s = None
            while len(ranks.done) < plan.world_size:
                ranks.poll(0.1)
                if startup_s is None and len(ranks.pids) == plan.world_size:
                    startup_s = time.perf_counter() - t0
                    log(f"all {plan.world_size} ranks started in {startup_s:.2f} s")
                if ranks.errors or ranks.crashed():
                    ranks.poll(1.0)  # let the root cause's own report arrive before choosing it
                    raise ranks.failure()
                if time.perf_counter() - t0 > timeout_s:
                    raise ranks.hang(timeout_s)
            result = ranks.result
            if isinstance(getattr(result, "timings", None), dict):
                result.timings["startup_s"] = startup_s or 0.0
                result.timings["wall_s"] = time.perf_counter() - t0
            return result
        finally:
            ranks.stop()


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when started by torchrun (or any env:// launcher)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        try:
            return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
        except ValueError:
            raise HelixInputError("RANK/WORLD_SIZE", "must be integers (set by torchrun)",
                                  os.environ.get("RANK")) from None
    return None


def run_torchrun(spec: RunSpec) -> RunResult | None:
    """This process is one rank of a torchrun job: rank 0 returns the RunResult."""
    rank, world, local_rank = torchrun_env()
    spec.check_fault(build_plan(spec.model, spec.partition, world))
    if spec.device == "cuda":
        check_device("cuda", int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return rank_main(spec, rank, world, local_rank)
