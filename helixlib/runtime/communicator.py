"""Collectives behind one small interface, so the same block runs in one process
(ranks as threads, collectives emulated by sums and concatenations) or over
torch.distributed (gloo on CPU, NCCL on GPU).

Every call names the collective (the plan's name) and its phase; the communicator
records it in its :class:`~helixlib.runtime.trace.Trace`, so a run can be compared with the
Plan's collectives call by call.
"""

from __future__ import annotations

import threading
import time

import torch

from helixlib.plan.names import MeshDim
from helixlib.plan.partition import Partition
from helixlib.runtime.trace import Trace


class Communicator:
    """Base: group bookkeeping and recording; subclasses implement ``_all_reduce`` etc.

    ``group`` is a mesh dim name: "dim_segment" (the m ranks of this rank's head group),
    "head_group" (the n ranks of this rank's dim segment) or "world".
    """

    def __init__(self, rank: int, partition: Partition, trace: Trace | None = None):
        self.rank = rank
        self.partition = partition
        self.trace = trace if trace is not None else Trace(rank)
        self.hooks: list = []  # called as hook(name, kind, ranks) before every collective

    def ranks(self, group: str) -> tuple[int, ...]:
        return tuple(self.partition.group_ranks(group, self.rank))

    def size(self, group: str) -> int:
        return len(self.ranks(group))

    def before_collective(self, name: str, kind: str, ranks: tuple[int, ...]) -> None:
        """Run the hooks (progress reporting, fault injection) before a collective."""
        for hook in self.hooks:
            hook(name, kind, ranks)

    def _record(self, fn, kind, t, group, name, phase, full_numel):
        ranks = self.ranks(group)
        self.before_collective(name, kind, ranks)
        self.trace.sync()
        start = time.perf_counter()
        try:
            out = fn(t.contiguous(), group)
            self.trace.sync()
        except PeerFailed:
            raise
        except Exception as exc:  # name the collective: "which one hung?" is the first question
            raise CollectiveError(f"rank {self.rank}: {kind} '{name}' ({phase}) over ranks {list(ranks)} "
                                  f"failed after {time.perf_counter() - start:.1f} s: {exc}") from exc
        self.trace.collective(name=name, kind=kind, phase=phase, ranks=ranks,
                              elements=full_numel, dtype_bytes=t.element_size(),
                              seconds=time.perf_counter() - start, start=start)
        return out

    def all_to_all(self, t: torch.Tensor, group: str, name: str, phase: str) -> torch.Tensor:
        """``t`` [p, ...]: piece i goes to member i; returns [p, ...], piece i from member i."""
        return self._record(self._all_to_all, "all_to_all", t, group, name, phase, t.numel())

    def all_to_all_async(self, t: torch.Tensor, group: str, name: str, phase: str) -> PendingCollective:
        """:meth:`all_to_all` started now and finished by ``.wait()`` (HOP-B). The trace records it
        at ``wait`` with ``start`` = now and ``seconds`` = the time ``wait`` blocked (exposed)."""
        ranks = self.ranks(group)
        self.before_collective(name, "all_to_all", ranks)
        start = time.perf_counter()
        finish = self._all_to_all_start(t.contiguous(), group)
        return PendingCollective(self, finish, dict(name=name, kind="all_to_all", phase=phase, ranks=ranks,
                                                    elements=t.numel(), dtype_bytes=t.element_size(),
                                                    start=start))

    def all_reduce(self, t: torch.Tensor, group: str, name: str, phase: str) -> torch.Tensor:
        """Sum of ``t`` over the group (a new tensor, same shape)."""
        return self._record(self._all_reduce, "all_reduce", t, group, name, phase, t.numel())

    def all_gather(self, t: torch.Tensor, group: str, dim: int, name: str, phase: str) -> torch.Tensor:
        """Concatenation along ``dim`` of every member's ``t``, in group order."""
        gathered = self._record(lambda x, g: self._all_gather(x.movedim(dim, 0).contiguous(), g),
                                "all_gather", t, group, name, phase, t.numel() * self.size(group))
        return gathered.movedim(0, dim)

    def reduce_scatter(self, t: torch.Tensor, group: str, dim: int, name: str, phase: str) -> torch.Tensor:
        """This member's chunk (along ``dim``) of the sum of every member's ``t``."""
        out = self._record(lambda x, g: self._reduce_scatter(x.movedim(dim, 0).contiguous(), g),
                           "reduce_scatter", t, group, name, phase, t.numel())
        return out.movedim(0, dim)

    # Subclasses: gather / scatter always along dim 0 of a contiguous tensor.
    def _all_reduce(self, t, group):
        raise NotImplementedError

    def _all_gather(self, t, group):
        raise NotImplementedError

    def _reduce_scatter(self, t, group):
        raise NotImplementedError

    def _all_to_all(self, t, group):
        return self._all_to_all_start(t, group)()

    def _all_to_all_start(self, t, group):
        """Start an all-to-all of ``t`` [p, ...]; return the function that waits and gives the result."""
        raise NotImplementedError


class PendingCollective:
    """An asynchronous collective in flight: ``wait()`` returns its result and records it."""

    def __init__(self, comm: Communicator, finish, event: dict):
        self.comm, self.finish, self.event = comm, finish, event

    def wait(self) -> torch.Tensor:
        c, ev = self.comm, self.event
        t0 = time.perf_counter()
        try:
            out = self.finish()
            c.trace.sync()
        except PeerFailed:
            raise
        except Exception as exc:
            raise CollectiveError(f"rank {c.rank}: {ev['kind']} '{ev['name']}' ({ev['phase']}) over ranks "
                                  f"{list(ev['ranks'])} failed: {exc}") from exc
        c.trace.collective(**ev, seconds=time.perf_counter() - t0, overlapped=True)
        return out


class CollectiveError(RuntimeError):
    """A collective failed or timed out; the message names it, its phase and its group."""


class PeerFailed(RuntimeError):
    """Raised in a simulated rank when another rank failed or the exchange timed out."""


class Rendezvous:
    """Where simulated ranks (threads) meet to exchange tensors."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self._cond = threading.Condition()
        self._slots: dict[tuple, dict[int, torch.Tensor]] = {}
        self._reads: dict[tuple, int] = {}
        self.failure: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self.failure = self.failure or exc
            self._cond.notify_all()

    def exchange(self, key: tuple, ranks: tuple[int, ...], rank: int, t: torch.Tensor) -> list[torch.Tensor]:
        """Deposit ``t`` under ``key``; return every member's tensor, in ``ranks`` order."""
        self.deposit(key, rank, t)
        return self.collect(key, ranks, rank)

    def deposit(self, key: tuple, rank: int, t: torch.Tensor) -> None:
        with self._cond:
            self._slots.setdefault(key, {})[rank] = t.detach().clone()
            self._cond.notify_all()

    def collect(self, key: tuple, ranks: tuple[int, ...], rank: int) -> list[torch.Tensor]:
        """Wait until every member deposited under ``key``; their tensors in ``ranks`` order."""
        with self._cond:
            slot = self._slots.setdefault(key, {})
            if not self._cond.wait_for(lambda: len(slot) == len(ranks) or self.failure, self.timeout):
                self.fail(PeerFailed(f"rank {rank}: timed out after {self.timeout}s in {key[1]} "
                                     f"on ranks {list(ranks)}"))
            if self.failure is not None:
                raise PeerFailed(f"rank {rank}: stopped, another rank failed: {self.failure}")
            out = [slot[r] for r in ranks]
            self._reads[key] = self._reads.get(key, 0) + 1
            if self._reads[key] == len(ranks):
                del self._slots[key], self._reads[key]
            return out


class ThreadCommunicator(Communicator):
    """In-process collectives: sums and concatenations in a fixed rank order, so every
    member gets a bitwise-identical result (as a real all-reduce does)."""

    def __init__(self, rank: int, partition: Partition, rendezvous: Rendezvous, trace: Trace | None = None):
        super().__init__(rank, partition, trace)
        self.rendezvous = rendezvous
        self._calls: dict[tuple, int] = {}

    def _key(self, group):
        ranks = self.ranks(group)
        n = self._calls.get(ranks, 0)
        self._calls[ranks] = n + 1
        return ranks, (ranks, n)

    def _peers(self, t, group):
        ranks, key = self._key(group)
        return ranks, self.rendezvous.exchange(key, ranks, self.rank, t)

    def _all_to_all_start(self, t, group):
        ranks, key = self._key(group)
        self.rendezvous.deposit(key, self.rank, t)
        me = ranks.index(self.rank)
        return lambda: torch.stack([part[me] for part in self.rendezvous.collect(key, ranks, self.rank)])

    def _all_reduce(self, t, group):
        _, parts = self._peers(t, group)
        return torch.stack(parts).sum(0)

    def _all_gather(self, t, group):
        _, parts = self._peers(t, group)
        return torch.cat(parts, 0)

    def _reduce_scatter(self, t, group):
        ranks, parts = self._peers(t, group)
        return torch.stack(parts).sum(0).chunk(len(ranks), 0)[ranks.index(self.rank)].clone()


class TorchCommunicator(Communicator):
    """Collectives over torch.distributed process groups taken from a DeviceMesh
    ``(n, m)`` named ``("head_group", "dim_segment")`` or ``(n, p)`` named ``("head_group",
    "kv_shard")`` (gloo on CPU, NCCL on GPU), plus the ``kv_share`` groups (head groups holding
    copies of the same KV heads) when the partition has them: every rank creates every one of
    those, in the same order (``dist.new_group``'s rule)."""

    def __init__(self, rank: int, partition: Partition, mesh, trace: Trace | None = None,
                 timeout_s: float | None = None):
        """``timeout_s``: the collective timeout of the groups created here (the mesh's come with it)."""
        import datetime

        import torch.distributed as dist

        super().__init__(rank, partition, trace)
        self.dist = dist
        self.groups = {name: mesh.get_group(name) for name in mesh.mesh_dim_names}
        self.groups[MeshDim.WORLD] = dist.group.WORLD
        if partition.kv_share > 1:
            for ranks in partition.groups(MeshDim.KV_SHARE):
                pg = dist.new_group(ranks, timeout=None if timeout_s is None
                                    else datetime.timedelta(seconds=timeout_s))
                if rank in ranks:
                    self.groups[MeshDim.KV_SHARE] = pg
        for name, pg in self.groups.items():  # the mesh must be the plan's layout, or every result is wrong
            got = tuple(dist.get_process_group_ranks(pg))
            if got != self.ranks(name):
                raise RuntimeError(f"rank {rank}: mesh group {name} is {list(got)}, the plan expects "
                                   f"{list(self.ranks(name))}: plan/launch mismatch")

    def _all_reduce(self, t, group):
        out = t.clone()
        self.dist.all_reduce(out, group=self.groups[group])
        return out

    def _all_gather(self, t, group):
        out = t.new_empty((t.shape[0] * self.size(group), *t.shape[1:]))
        self.dist.all_gather_single(out, t, group=self.groups[group])
        return out

    def _reduce_scatter(self, t, group):
        out = t.new_empty((t.shape[0] // self.size(group), *t.shape[1:]))
        self.dist.reduce_scatter_single(out, t, group=self.groups[group])
        return out

    def _all_to_all_start(self, t, group):
        """``all_to_all_single`` with equal splits along dim 0: the real collective on both backends
        (PyTorch's backend table lists all_to_all for gloo on CPU and NCCL on GPU,
        https://docs.pytorch.org/docs/stable/distributed.html#backends; gloo's is exercised by the
        tests, NCCL's has not run here: no GPU)."""
        out = torch.empty_like(t)
        work = self.dist.all_to_all_single(out, t, group=self.groups[group], async_op=True)
        return lambda: (work.wait(), out)[1]
