"""What a run actually did, per rank: collectives (in call order, with sizes and
times), operator times, peak memory and end-to-end latency — the plan's
"monitoring points" as data. ``signature()`` of a recorded collective is comparable
with :meth:`helixlib.plan.build.Collective.signature`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field


@dataclass
class CollectiveEvent:
    name: str
    kind: str
    phase: str
    ranks: tuple[int, ...]
    elements: int  # full buffer, as in the Plan
    dtype_bytes: int
    seconds: float  # the time the rank was blocked by it (for an async one: its wait)
    start: float
    step: int = 0  # decode: the step it belongs to
    overlapped: bool = False  # started asynchronously, waited for later (HOP-B)

    @property
    def bytes(self) -> int:
        return self.elements * self.dtype_bytes

    def signature(self) -> tuple:
        return (self.phase, self.name, self.kind, tuple(self.ranks), self.elements)


@dataclass
class OpEvent:
    name: str
    phase: str
    seconds: float
    start: float
    step: int = 0


@dataclass
class Trace:
    """What one rank ran. ``synchronize`` (``torch.cuda.synchronize`` on a GPU, else None) is
    called before and after every timed op and collective, so a GPU's times are kernel times,
    not launch times (CUDA kernels and NCCL calls return before the work is done)."""

    rank: int
    collectives: list[CollectiveEvent] = field(default_factory=list)
    ops: list[OpEvent] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # forward_s, backward_s, total_s
    peak_memory_bytes: int | None = None
    synchronize: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    step: int = field(default=0, repr=False, compare=False)  # decode: the step being recorded

    def sync(self) -> None:
        if self.synchronize is not None:
            self.synchronize()

    def clear(self) -> None:
        """Forget everything recorded (between warm-up and timed steps)."""
        self.collectives.clear()
        self.ops.clear()
        self.timings.clear()

    def collective(self, **kw) -> None:
        self.collectives.append(CollectiveEvent(**kw, step=self.step))

    @contextmanager
    def op(self, name: str, phase: str = "forward"):
        """Time one operator (with the device synchronised on both sides, see the class)."""
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.ops.append(OpEvent(name, phase, time.perf_counter() - start, start, self.step))

    def signatures(self, phase: str | None = None) -> list[tuple]:
        return [c.signature() for c in self.collectives if phase is None or c.phase == phase]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("synchronize")
        d.pop("step")
        for c, ev in zip(d["collectives"], self.collectives):
            c["ranks"] = list(ev.ranks)
            c["bytes"] = ev.bytes
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Trace:
        colls = [CollectiveEvent(**{k: v for k, v in c.items() if k != "bytes"}) for c in d["collectives"]]
        for c in colls:
            c.ranks = tuple(c.ranks)
        return cls(d["rank"], colls, [OpEvent(**o) for o in d["ops"]], dict(d["timings"]), d.get("peak_memory_bytes"))
