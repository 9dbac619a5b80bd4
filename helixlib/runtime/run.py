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
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import torch

from helixlib.core.errors import HelixInputError, one_of
from helixlib.plan.build import Plan, build_plan
from helixlib.plan.model import ModelConfig
from helixlib.plan.partition import MESH_DIM_NAMES, Partition
from helixlib.runtime.communicator import TorchCommunicator
from helixlib.runtime.steps import cpu_rank_threads
from helixlib.runtime.trace import Trace
from helixlib.runtime.verify import Comparison, RankOutput, compare, dense_reference, prepare_rank, run_step

FAULT_KINDS = ("raise", "hang", "crash")


@dataclass(frozen=True)
class Fault:
    """Injected failure, for testing failure handling: on ``rank``, just before the
    collective called ``at`` (a plan name, e.g. "scores_allreduce" or "fc1_input.backward"),
    raise an error, hang forever, or crash (the process exits at once, no traceback)."""

    rank: int
    at: str
    kind: str = "raise"

    def __post_init__(self):
        one_of("fault.kind", self.kind, FAULT_KINDS)


@dataclass(frozen=True)
class RunSpec:
    """Everything a rank needs to know (picklable; sent to every process)."""

    model: ModelConfig  # its dtype is the run's dtype
    partition: Partition
    seed: int = 0
    backward: bool = True
    verify: bool = True
    device: str = "auto"  # auto | cpu | cuda
    collective_timeout_s: float = 60.0
    warmup: int = 0  # untimed steps before the recorded one
    threads_per_rank: int | None = None  # torch intra-op threads; None: cores / local ranks
    fault: Fault | None = None

    def __post_init__(self):
        one_of("device", self.device, ("auto", "cpu", "cuda"))
        if self.collective_timeout_s <= 0:
            raise HelixInputError("collective_timeout_s", "must be positive", self.collective_timeout_s)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class RunResult:
    """What a distributed run did and whether it was right (built on rank 0)."""

    spec: dict
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
            "spec": self.spec, "world_size": self.world_size, "backend": self.backend, "device": self.device,
            "ok": self.ok, "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "collectives_match": self.collectives_match, "mismatches": self.mismatches,
            "timings": self.timings, "peak_memory_bytes": self.peak_memory_bytes, "memory_kind": self.memory_kind,
            "op_seconds": self.op_seconds(), "collectives": self.collective_summary(),
            "traces": [t.to_dict() for t in self.traces],
        }


def match_collectives(plan: Plan, traces: list[Trace], backward: bool = True) -> list[str]:
    """Differences between what each rank called and what the plan says it calls (empty: equal)."""
    problems = []
    for r, tr in enumerate(traces):
        want = [c.signature() for c in plan.collectives_for_rank(r, None if backward else "forward")]
        got = tr.signatures()
        if got != want:
            i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            problems.append(f"rank {r}: call {i}: ran {got[i] if i < len(got) else 'nothing'}, "
                            f"plan says {want[i] if i < len(want) else 'nothing'}")
    return problems


def resolve_device(spec: RunSpec, local_rank: int) -> torch.device:
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise HelixInputError("device", "cuda requested but torch.cuda.is_available() is False", spec.device)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_process_group(device: torch.device, rank: int, world_size: int, timeout_s: float,
                       store_port: int | None = None) -> str:
    """gloo on CPU, NCCL on GPU; a TCPStore on 127.0.0.1 (local launcher) or env:// (torchrun)."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if store_port is not None:
        store = dist.TCPStore("127.0.0.1", store_port, is_master=False, timeout=timeout)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    else:
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
    return backend


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
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    plan = build_plan(spec.model, spec.partition, world_size)  # refuses a world-size mismatch
    device = resolve_device(spec, local_rank)
    if device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(cpu_rank_threads(spec.threads_per_rank, local, os.cpu_count()))
    backend = init_process_group(device, rank, world_size, spec.collective_timeout_s, store_port)
    try:
        part = spec.partition
        mesh = init_device_mesh(device.type, (part.head_groups, part.dim_segments), mesh_dim_names=MESH_DIM_NAMES)
        comm = TorchCommunicator(rank, part, mesh, Trace(rank))
        if spec.fault is not None:  # before progress: a rank hanging here never entered the call
            comm.hooks.append(_fault_hook(spec.fault, rank))
        if progress is not None:
            comm.hooks.append(lambda *a: progress.__setitem__(rank, progress[rank] + 1))
        inputs = prepare_rank(plan, rank, comm, spec.model.dtype, spec.seed, device)
        for _ in range(spec.warmup):
            run_step(inputs, spec.backward)
            comm.trace.clear()
            if progress is not None:
                progress[rank] = 0
        output = run_step(inputs, spec.backward)
        peak, memory_kind = _peak_memory(device)
        comm.trace.peak_memory_bytes = peak
        payload = {"trace": comm.trace.to_dict(), "peak": peak,
                   "out": output.out.cpu() if spec.verify else None,
                   "grads": {k: v.cpu() for k, v in output.grads.items()} if spec.verify else {}}
        gathered = [None] * world_size if rank == 0 else None
        dist.gather_object(payload, gathered, dst=0)
        if rank != 0:
            return None
        traces = [Trace.from_dict(p["trace"]) for p in gathered]
        comparison = None
        if spec.verify:
            outs = [RankOutput(r, p["out"], p["grads"]) for r, p in enumerate(gathered)]
            ref = dense_reference(plan, spec.seed, spec.backward)
            dtype = spec.model.dtype
            dense_dtype = None if dtype == "fp64" else dense_reference(plan, spec.seed, False, dtype)
            comparison = compare(plan, outs, ref, dtype, dense_dtype)
        problems = match_collectives(plan, traces, spec.backward)
        return RunResult(spec.to_dict(), world_size, backend, str(device), comparison, not problems, problems,
                         traces, [p["peak"] for p in gathered], memory_kind)
    finally:
        dist.destroy_process_group()
