"""Launching ranks: a local launcher for CPU processes, and the torchrun entry.

Local launcher (``launch_local``):

* start: ``forkserver`` with torch and helixlib preloaded — the server imports torch once
  and forks every rank from a process that never started a thread (plain ``fork`` from a
  process that ran torch ops can deadlock gloo; ``spawn`` re-imports torch in every rank:
  measured here, 16 ranks on 2 cores start in ~2.4 s, ~0.6 s and ~33 s;
  ``benchmarks/bench_launch.py``);
* rendezvous: a TCPStore the launcher serves on 127.0.0.1, port chosen by the kernel
  (port 0: nothing to race for, so no "address in use"); gloo bound to loopback;
* supervision: every rank reports its traceback on failure; the launcher stops all ranks
  at the first failure, turns a hang into an error (process-group timeout inside the
  ranks, an overall deadline outside, stacks of stuck ranks via faulthandler) and leaves
  no process behind (ranks also die with their parent: PR_SET_PDEATHSIG).

As with any ``multiprocessing`` program, a script that calls ``launch_local`` must do so
under ``if __name__ == "__main__":`` (forkserver and spawn import the main module in
every rank). Notebooks and ``python -m helixlib run`` need nothing.
"""

from __future__ import annotations

import ctypes
import faulthandler
import importlib
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from helixlib.core.errors import HelixInputError, one_of
from helixlib.plan import build_plan
from helixlib.runtime.communicator import CollectiveError, PeerFailed
from helixlib.runtime.run import RunResult, RunSpec, rank_main

START_METHODS = ("forkserver", "fork", "spawn")
# Imported once in the fork server. symbolic_shapes (and sympy under it) is imported
# lazily by the first backward(): ~4 s per rank on 2 cores if every rank does it.
_PRELOAD = ["torch", "torch.distributed", "torch.distributed.device_mesh", "torch.fx.experimental.symbolic_shapes",
            "helixlib.runtime.launch", "helixlib.runtime.layer"]


class DistributedRunError(RuntimeError):
    """A rank failed, hung, or the run did not finish in time. ``rank``/``rank_traceback``
    name the first failing rank when one is known."""

    def __init__(self, message: str, rank: int | None = None, rank_traceback: str = "", pids=()):
        super().__init__(message)
        self.rank, self.rank_traceback, self.pids = rank, rank_traceback, tuple(pids)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so a killed launcher leaves no ranks."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _rank_entry(rank_fn, spec: RunSpec, rank: int, world: int, port, messages, progress, stack_dir: str) -> None:
    """Body of one rank process: report start, run, report result or traceback."""
    _die_with_parent()
    stacks = open(Path(stack_dir) / f"rank{rank}.txt", "w")
    faulthandler.enable(file=stacks)  # fatal signals
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)  # launcher asks "where are you?"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    messages.put(("started", rank, os.getpid()))
    try:
        deadline = time.monotonic() + 60
        while port.value == 0:  # the launcher opens the store after forking (see launch_local)
            if time.monotonic() > deadline:
                raise RuntimeError("the launcher's store did not open within 60 s")
            time.sleep(0.005)
        result = rank_fn(spec, rank, world, local_rank=rank, store_port=port.value, progress=progress)
        messages.put(("done", rank, result))
    except BaseException as exc:  # noqa: BLE001 - everything goes to the launcher
        messages.put(("error", rank, (type(exc).__name__, traceback.format_exc())))
        sys.exit(1)


class _Ranks:
    """The launched rank processes and what they have told the launcher."""

    def __init__(self, ctx, spec: RunSpec, plan, rank_fn):
        self.plan, self.world = plan, plan.world_size
        self.port = ctx.Value("i", 0, lock=False)  # set once the store is open
        self.messages = ctx.Queue()
        self.progress = ctx.Array("i", self.world, lock=False)  # collectives entered, per rank
        self.stack_dir = tempfile.mkdtemp(prefix="helix-stacks-")
        self.procs = [ctx.Process(target=_rank_entry, name=f"helix-rank{r}", daemon=True,
                                  args=(rank_fn, spec, r, self.world, self.port, self.messages, self.progress,
                                        self.stack_dir))
                      for r in range(self.world)]
        self.pids: dict[int, int] = {}
        self.errors: dict[int, str] = {}  # rank -> traceback
        self.error_types: dict[int, str] = {}  # rank -> the exception's class name
        self.done: set[int] = set()
        self.result: RunResult | None = None

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def poll(self, timeout: float) -> None:
        """Take the messages that arrive within ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            try:
                kind, rank, payload = self.messages.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            if kind == "started":
                self.pids[rank] = payload
            elif kind == "done":
                self.done.add(rank)
                self.result = payload if rank == 0 else self.result
            elif kind == "error":
                self.error_types[rank], tb = payload
                self.errors[rank] = tb.rstrip()

    def crashed(self) -> list[int]:
        """Ranks whose process ended badly without sending a traceback."""
        return [r for r, p in enumerate(self.procs)
                if p.exitcode not in (None, 0) and r not in self.errors and r not in self.done]

    def stack(self, rank: int) -> str:
        path = Path(self.stack_dir) / f"rank{rank}.txt"
        return path.read_text().strip() if path.exists() else ""

    def where(self, rank: int) -> str:
        """Where a rank is, from the number of collectives it has entered."""
        calls = self.plan.collectives_for_rank(rank)
        n = self.progress[rank]
        if n == 0:
            return f"before its first collective ({calls[0].name})" if calls else "running (no collectives)"
        last = calls[min(n, len(calls)) - 1]
        return f"in or after {last.phase} {last.name} (call {n} of {len(calls)})"

    def where_lines(self, ranks) -> list[str]:
        """Ranks grouped by where they are, with the main-thread frame of one rank of each group."""
        groups: dict[str, list[int]] = {}
        for r in ranks:
            groups.setdefault(self.where(r), []).append(r)
        lines = []
        for w, rs in groups.items():
            frame = _innermost_frame(self.stack(rs[0]))
            who = f"ranks {rs}" if len(rs) > 1 else f"rank {rs[0]}"
            lines.append(f"  {who}: {w}" + (f"; rank {rs[0]} at {frame}" if frame else ""))
        return lines

    def failure(self) -> DistributedRunError:
        """The root cause first: a crashed rank, else an error that is not a collective
        failing because a peer went away, else the first error."""
        crashed = self.crashed()
        if crashed:
            r = crashed[0]
            head, tb = f"rank {r} died with exit code {self.procs[r].exitcode} (no traceback)", self.stack(r)
        else:
            # a collective failing because a peer went away is a consequence, not the cause
            primary = [r for r in self.errors if self.error_types.get(r) not in _CONSEQUENCES]
            r = (primary or list(self.errors))[0]
            tb = self.errors[r]
            head = f"rank {r} failed: {tb.splitlines()[-1]}"
        lines = [head, "where each rank was:"] + self.where_lines(range(self.world))
        others = sorted(set(self.errors) - {r})
        if others:
            lines.append(f"also failed (after it): ranks {others}")
        if tb:
            lines += [f"traceback of rank {r}:", tb]
        return DistributedRunError("\n".join(lines), r, tb, self.pids.values())

    def hang(self, timeout_s: float) -> DistributedRunError:
        alive = [r for r, p in enumerate(self.procs) if p.is_alive() and r not in self.done]
        for r in alive:  # faulthandler in the rank writes every thread's stack
            os.kill(self.procs[r].pid, signal.SIGUSR1)
        time.sleep(0.5)
        lines = [f"no result after {timeout_s:.0f} s; ranks still running: {alive}"] + self.where_lines(alive)
        return DistributedRunError("\n".join(lines), pids=self.pids.values())

    def stop(self, grace_s: float = 2.0) -> None:
        started = [p for p in self.procs if p.pid is not None]
        for p in started:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
        self.messages.close()
        shutil.rmtree(self.stack_dir, ignore_errors=True)


#: exception classes a rank raises when another rank failed first
_CONSEQUENCES = {CollectiveError.__name__, PeerFailed.__name__}


def _innermost_frame(dump: str) -> str:
    """The most recent frame of the main thread in a faulthandler dump ('file:line in func')."""
    lines = dump.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Current thread")]
    if not starts:
        return ""
    for line in lines[starts[-1] + 1:]:
        line = line.strip()
        if line.startswith("File "):
            path, _, rest = line[5:].partition(", line ")
            return f"{Path(path.strip(chr(34))).name}:{rest}"
    return ""


def launch_local(spec: RunSpec, start_method: str = "forkserver", timeout_s: float | None = None,
                 log=None, rank_fn=rank_main) -> RunResult:
    """Run ``spec`` on n·m local CPU processes; return rank 0's RunResult with
    ``timings`` (startup_s: launch until every rank reported in; wall_s: launch to result).
    Raises DistributedRunError on any rank failure, hang or overall timeout.

    ``rank_fn(spec, rank, world_size, local_rank, store_port, progress)`` is what each rank
    runs (default :func:`helixlib.runtime.run.rank_main`; benchmarks pass their own, which
    must be importable: a module-level function)."""
    one_of("start_method", start_method, START_METHODS)
    plan = build_plan(spec.model, spec.partition, phase=spec.phase)  # bad input fails here, before any process
    if timeout_s is None:
        timeout_s = 120 + 3 * spec.collective_timeout_s
    log = log or (lambda msg: None)

    import torch.distributed as dist

    t0 = time.perf_counter()
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    elif start_method == "fork":  # forked ranks inherit what this process has imported
        for module in _PRELOAD:
            importlib.import_module(module)
    ranks = _Ranks(ctx, spec, plan, rank_fn)
    try:
        ranks.start()
        # The store's server thread starts only now: a process forked while it ran could
        # inherit a held lock (the fork-after-threads deadlock).
        store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
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
    return rank_main(spec, rank, world, local_rank)
