"""Several timed steps of the distributed block, every rank's trace of each (notebook 05's
monitoring plots are medians over these steps: one step on a shared machine is one sample of
its noise, not a measurement).

:func:`record_steps` launches the ranks with ``helixlib.runtime.launch.launch_local`` and a rank
function of its own (:func:`record_steps_rank`, module level so the fork server's children can
import it); everything else — process group, mesh, the partitioned block, the trace — is the
distributed run's own (``helixlib.runtime.session``, ``helixlib.runtime.verify``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from helixlib.core.errors import positive_int
from helixlib.runtime.launch import launch_local
from helixlib.runtime.session import rank_session
from helixlib.runtime.spec import RunSpec
from helixlib.runtime.trace import Trace
from helixlib.runtime.verify import run_step


@dataclass
class StepRecord:
    """``steps[k][r]``: rank r's trace of timed step k (after ``spec.warmup`` untimed ones)."""

    spec: RunSpec
    world_size: int
    steps: list[list[Trace]]
    timings: dict[str, float] = field(default_factory=dict)  # the launcher's: startup_s, wall_s


def record_steps_rank(spec: RunSpec, rank: int, world_size: int, local_rank: int = 0, store_port: int | None = None,
                      progress=None, steps: int = 5) -> StepRecord | None:
    """One rank: ``spec.warmup`` untimed steps, then ``steps`` recorded ones; rank 0 returns them all."""
    with rank_session(spec, rank, world_size, local_rank, store_port) as s:
        inputs = s.prepare()
        trace = s.comm.trace
        if progress is not None:
            s.comm.hooks.append(lambda *a: progress.__setitem__(rank, progress[rank] + 1))
        recorded = []
        for i in range(spec.warmup + steps):
            run_step(inputs, spec.backward)
            if i >= spec.warmup:
                recorded.append(trace.to_dict())
            trace.clear()
        gathered = s.gather(recorded)
        if rank != 0:
            return None
        return StepRecord(spec, world_size, [[Trace.from_dict(g[k]) for g in gathered] for k in range(steps)])


def record_steps(spec: RunSpec, steps: int = 5) -> StepRecord:
    """Run ``spec`` on local CPU processes for ``steps`` timed steps; every rank's trace of each."""
    steps = positive_int("steps", steps)
    return launch_local(spec, rank_fn=functools.partial(record_steps_rank, steps=steps))
