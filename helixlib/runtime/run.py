"""One rank of a real distributed run: process group, DeviceMesh, the partitioned block,
monitoring, and (on rank 0) verification against the dense block.

The same :func:`rank_main` runs under the local launcher (``helixlib.runtime.launch``: CPU
processes, gloo, a TCPStore on 127.0.0.1) and under ``torchrun`` (env:// rendezvous;
NCCL and ``cuda:LOCAL_RANK`` when CUDA is present).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

import torch

from helixlib.plan import Plan, StepPhase, decode_plans
from helixlib.runtime.session import rank_session
from helixlib.runtime.spec import Fault, RunSpec
from helixlib.runtime.trace import Trace
from helixlib.runtime.verify import Comparison, RankOutput, compare, dense_reference, run_step

__all__ = ["Fault", "RunResult", "RunSpec", "match_collectives", "rank_main"]

@dataclass
class RunResult:
    """What a distributed run did and whether it was right (built on rank 0)."""

    spec: RunSpec
    world_size: int
    backend: str
    device: str
    comparison: Comparison | None
    collectives_match: bool
    mismatches: list[str]
    traces: list[Trace]
    peak_memory_bytes: list[int]
    memory_kind: str  # what peak_memory_bytes measures
    timings: dict[str, float] = field(default_factory=dict)  # launcher: startup_s, wall_s

    @property
    def ok(self) -> bool:
        return self.collectives_match and (self.comparison is None or self.comparison.ok)

    def op_seconds(self) -> dict[str, list[float]]:
        """Forward time of each operator, per rank (plan order)."""
        names = [o.name for o in self.traces[0].ops]
        return {n: [sum(o.seconds for o in t.ops if o.name == n) for t in self.traces] for n in names}

    def collective_summary(self) -> list[dict]:
        """Per named collective (summed over its groups): calls, bytes moved, seconds per call."""
        by_name: dict[tuple, dict] = {}
        for t in self.traces:
            for c in t.collectives:
                row = by_name.setdefault((c.phase, c.name), {"name": c.name, "phase": c.phase, "kind": c.kind,
                                                               "calls": 0, "bytes": 0, "seconds": []})
                row["calls"] += 1
                row["bytes"] += c.bytes
                row["seconds"].append(c.seconds)
        return list(by_name.values())

    def to_dict(self) -> dict:
        return {
            "spec": self.spec.to_dict(), "world_size": self.world_size, "backend": self.backend, "device": self.device,
            "ok": self.ok, "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "collectives_match": self.collectives_match, "mismatches": self.mismatches,
            "timings": self.timings, "peak_memory_bytes": self.peak_memory_bytes, "memory_kind": self.memory_kind,
            "op_seconds": self.op_seconds(), "collectives": self.collective_summary(),
            "traces": [t.to_dict() for t in self.traces],
        }


def match_collectives(plan: Plan | list[Plan], traces: list[Trace], backward: bool = True) -> list[str]:
    """Differences between what each rank called and what the plan says it calls (empty: equal).
    A list of Plans is a decode loop: step t's collectives are those of ``plan[t]``."""
    from helixlib.runtime.decode import decode_signatures

    problems = []
    for r, tr in enumerate(traces):
        if isinstance(plan, list):
            want = decode_signatures(plan, r)
        else:
            want = [c.signature() for c in plan.collectives_for_rank(r, None if backward else "forward")]
        got = tr.signatures()
        if got != want:
            i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            problems.append(f"rank {r}: call {i}: ran {got[i] if i < len(got) else 'nothing'}, "
                            f"plan says {want[i] if i < len(want) else 'nothing'}")
    return problems


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (includes the torch runtime)"


def _fault_hook(fault: Fault, rank: int):
    def hook(name, kind, ranks):
        if rank == fault.rank and name == fault.at:
            if fault.kind == "raise":
                raise RuntimeError(f"injected fault on rank {rank} before {name}")
            if fault.kind == "crash":
                os._exit(70)
            while True:  # "hang": never enter the collective
                time.sleep(3600)
    return hook


def rank_main(spec: RunSpec, rank: int, world_size: int, local_rank: int = 0,
              store_port: int | None = None, progress=None) -> RunResult | None:
    """Run one rank; rank 0 returns the RunResult, the others None. ``progress`` (a shared
    int array, one slot per rank) counts the collectives each rank has entered."""
    with rank_session(spec, rank, world_size, local_rank, store_port) as s:
        comm, plan = s.comm, s.plan
        if spec.fault is not None:  # before progress: a rank hanging here never entered the call
            comm.hooks.append(_fault_hook(spec.fault, rank))
        if progress is not None:
            comm.hooks.append(lambda *a: progress.__setitem__(rank, progress[rank] + 1))
        decode = spec.phase == StepPhase.DECODE
        if decode:  # one Plan per step; a fresh cache before every loop
            from helixlib.runtime.decode import prepare_decode, run_decode

            plan = decode_plans(spec.model, spec.partition, spec.steps, world_size)
            inputs = prepare_decode(plan[0], rank, comm, spec.steps, spec.model.dtype, spec.seed, s.device)
            step = lambda: (inputs.reload(), run_decode(inputs))[1]  # noqa: E731
        else:
            inputs = s.prepare()
            step = lambda: run_step(inputs, spec.backward)  # noqa: E731
        for _ in range(spec.warmup):
            step()
            comm.trace.clear()
            if progress is not None:
                progress[rank] = 0
        output = step()
        peak, memory_kind = _peak_memory(s.device)
        comm.trace.peak_memory_bytes = peak
        payload = {"trace": comm.trace.to_dict(), "peak": peak,
                   "out": output.out.cpu() if spec.verify else None,
                   "grads": {k: v.cpu() for k, v in output.grads.items()} if spec.verify else {}}
        gathered = s.gather(payload)
        if rank != 0:
            return None
        traces = [Trace.from_dict(p["trace"]) for p in gathered]
        comparison = None
        if spec.verify:
            outs = [RankOutput(r, p["out"], p["grads"]) for r, p in enumerate(gathered)]
            dtype = spec.model.dtype
            if decode:
                from helixlib.runtime.decode import verify_decode

                comparison = verify_decode(plan, outs, spec.seed, dtype)
            else:
                ref = dense_reference(plan, spec.seed, spec.backward)
                dense_dtype = None if dtype == "fp64" else dense_reference(plan, spec.seed, False, dtype)
                comparison = compare(plan, outs, ref, dtype, dense_dtype)
        problems = match_collectives(plan, traces, spec.backward and not decode)
        return RunResult(spec, world_size, s.backend, str(s.device), comparison, not problems, problems,
                         traces, [p["peak"] for p in gathered], memory_kind)
