"""The launcher's side of the local rank processes: start them, take their messages, stop them
(leaving nothing behind), and say what went wrong — the root cause first.

Diagnosis: a rank that raised is the cause, unless what it raised is the consequence of another
rank's failure (a collective that timed out or saw its peer go away). When only consequences
are reported, the cause is a rank that never arrived: from the number of collectives each rank
has entered (``progress``) and the Plan's call order, the members of each timed-out collective
that never entered it are found, and the one furthest behind is named, with the frame it is
stuck in (its ``faulthandler`` dump).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from helixlib.plan import Plan
from helixlib.plan.ops import Collective
from helixlib.runtime.communicator import CollectiveError, PeerFailed
from helixlib.runtime.rank_process import InheritedFd, rank_entry
from helixlib.runtime.run import RunResult, RunSpec

#: exception classes a rank raises when another rank failed first
CONSEQUENCES = {CollectiveError.__name__, PeerFailed.__name__}


class DistributedRunError(RuntimeError):
    """A rank failed, hung, or the run did not finish in time. ``rank``/``rank_traceback``
    name the failing rank (and its traceback, or the stack it hung in) when one is known."""

    def __init__(self, message: str, rank: int | None = None, rank_traceback: str = "", pids=()):
        super().__init__(message)
        self.rank, self.rank_traceback, self.pids = rank, rank_traceback, tuple(pids)


class LocalRanks:
    """The launched rank processes and what they have told the launcher."""

    def __init__(self, ctx, spec: RunSpec, plan: Plan, rank_fn):
        self.plan, self.world = plan, plan.world_size
        self.port = ctx.Value("i", 0, lock=False)  # set once the store is open
        self.progress = ctx.Array("i", self.world, lock=False)  # collectives entered, per rank
        # one pipe per rank (no semaphores: nothing for multiprocessing's resource tracker to
        # report as leaked when the launcher is killed), and an unnamed file for its stacks
        pipes = [ctx.Pipe(duplex=False) for _ in range(self.world)]
        self.inbox = {reader: r for r, (reader, _) in enumerate(pipes)}
        self._outboxes = [writer for _, writer in pipes]
        self.stacks = [tempfile.TemporaryFile() for _ in range(self.world)]
        self.procs = [ctx.Process(target=rank_entry, name=f"helix-rank{r}", daemon=True,
                                  args=(rank_fn, spec, r, self.world, self.port, self._outboxes[r], self.progress,
                                        InheritedFd(self.stacks[r].fileno())))
                      for r in range(self.world)]
        self.pids: dict[int, int] = {}
        self.errors: dict[int, str] = {}  # rank -> traceback
        self.error_types: dict[int, str] = {}  # rank -> the exception's class name
        self.done: set[int] = set()
        self.result: RunResult | None = None

    def start(self) -> None:
        for p in self.procs:
            p.start()
        for writer in self._outboxes:  # the ranks hold them now
            writer.close()

    def poll(self, timeout: float) -> None:
        """Take the messages that arrive within ``timeout`` seconds."""
        from multiprocessing.connection import wait

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.inbox:  # every rank has gone
                time.sleep(max(0.0, end - time.monotonic()))
                return
            for reader in wait(list(self.inbox), max(0.0, end - time.monotonic())):
                self._take(reader)

    def _take(self, reader) -> None:
        try:
            kind, rank, payload = reader.recv()
        except (EOFError, OSError):  # the rank has gone; crashed() tells how
            del self.inbox[reader]
            reader.close()
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
        """What the rank's faulthandler wrote (every dump so far)."""
        fd = self.stacks[rank].fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace").strip()

    def dump_stacks(self, ranks) -> None:
        """Ask ``ranks`` for their stacks (faulthandler writes every thread's) and give them time to write."""
        for r in ranks:
            if self.procs[r].is_alive():
                os.kill(self.procs[r].pid, signal.SIGUSR1)
        time.sleep(0.5)

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
            frame = innermost_frame(self.stack(rs[0]))
            who = f"ranks {rs}" if len(rs) > 1 else f"rank {rs[0]}"
            lines.append(f"  {who}: {w}" + (f"; rank {rs[0]} at {frame}" if frame else ""))
        return lines

    def _timed_out_in(self, rank: int) -> Collective | None:
        """The collective ``rank`` was in when it failed (the last one it entered)."""
        calls, n = self.plan.collectives_for_rank(rank), self.progress[rank]
        return calls[n - 1] if 0 < n <= len(calls) else None

    def absent(self) -> dict[int, list[int]]:
        """Ranks that never entered a collective a failed rank was waiting in -> the ranks that
        waited for them; the rank furthest behind first."""
        waited: dict[int, list[int]] = {}
        for e in self.errors:
            c = self._timed_out_in(e)
            for r in c.ranks if c is not None else ():
                if self.progress[r] <= self.plan.collectives_for_rank(r).index(c):  # never entered it
                    waited.setdefault(r, []).append(e)
        return dict(sorted(waited.items(), key=lambda kv: (self.progress[kv[0]], kv[0])))

    def failure(self) -> DistributedRunError:
        """The root cause first: a crashed rank, else an error that is not the consequence of
        another rank's failure, else the rank the others waited for, else the first error."""
        crashed = self.crashed()
        primary = [r for r in self.errors if self.error_types.get(r) not in CONSEQUENCES]
        absent = {} if crashed or primary else {r: w for r, w in self.absent().items() if r not in self.errors}
        if crashed:
            r = crashed[0]
            head, tb = f"rank {r} died with exit code {self.procs[r].exitcode} (no traceback)", self.stack(r)
        elif absent:
            r, waiting = next(iter(absent.items()))
            self.dump_stacks([r])
            calls = self.plan.collectives_for_rank(r)
            c = calls[self.progress[r]]
            frame = innermost_frame(self.stack(r))
            head = (f"rank {r} never entered {c.phase} {c.name} (its call {self.progress[r] + 1} of {len(calls)}, "
                    f"over ranks {list(c.ranks)}); ranks {sorted(waiting)} timed out waiting for it"
                    + (f"; rank {r} is at {frame}" if frame else ""))
            tb = self.stack(r)
        else:
            r = (primary or list(self.errors))[0]
            tb = self.errors[r]
            head = f"rank {r} failed: {tb.splitlines()[-1]}"
        lines = [head, "where each rank was:"] + self.where_lines(range(self.world))
        others = sorted(set(self.errors) - {r})
        if others and not absent:
            lines.append(f"also failed (after it): ranks {others}")
        if absent:
            first = min(waiting, key=lambda e: (self._timed_out_in(e) != c, e))  # one that waited in c
            lines += [f"error of rank {first}, waiting:", self.errors[first].splitlines()[-1]]
        if tb:
            lines += [f"{'stack' if absent else 'traceback'} of rank {r}:", tb]
        return DistributedRunError("\n".join(lines), r, tb, self.pids.values())

    def hang(self, timeout_s: float) -> DistributedRunError:
        alive = [r for r, p in enumerate(self.procs) if p.is_alive() and r not in self.done]
        self.dump_stacks(alive)
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
        for f in list(self.inbox) + self._outboxes + self.stacks:
            f.close()


def innermost_frame(dump: str) -> str:
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
