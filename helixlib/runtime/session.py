"""One rank's lifecycle, in one place: device and threads, the process group (gloo on CPU, NCCL on
GPU, with the run's collective timeout), the ``(n, m)`` DeviceMesh, the Plan (built once), the
communicator, gathering to rank 0, and teardown. The distributed run, the timed steps of the
validation and the benchmarks, and calibration all enter a rank through :func:`rank_session`.

Rendezvous: a TCPStore client on 127.0.0.1 (the local launcher serves it) or env:// (torchrun).
Timeouts: the run's collective timeout holds for every process group, the world's and the mesh's
sub-groups (which DeviceMesh would otherwise create with torch's default, 30 minutes for gloo).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch

from helixlib.core.errors import HelixInputError
from helixlib.plan import Plan, build_plan
from helixlib.plan.names import MESH_DIM_NAMES
from helixlib.runtime.communicator import TorchCommunicator
from helixlib.runtime.spec import RunSpec
from helixlib.runtime.trace import Trace


def cpu_rank_threads(threads_per_rank: int | None, local_ranks: int, cores: int | None) -> int:
    """Intra-op threads of one CPU rank: as asked, else the cores shared out (at least 1)."""
    return threads_per_rank or max(1, (cores or 1) // local_ranks)


def check_device(device: str, ranks_here: int = 1) -> None:
    """``cuda`` needs CUDA and one GPU for each of the ``ranks_here`` ranks on this machine."""
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        raise HelixInputError("device", "cuda requested but this machine has no usable CUDA device "
                                        "(torch.cuda.is_available() is False)", device)
    if torch.cuda.device_count() < ranks_here:
        raise HelixInputError("device", f"cuda needs one GPU per rank: {ranks_here} ranks on this machine, "
                                        f"{torch.cuda.device_count()} GPUs", device)


def resolve_device(spec: RunSpec, local_rank: int) -> torch.device:
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        check_device("cuda", local_rank + 1)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def mesh_timeouts(backend: str, timeout_s: float) -> dict:
    """``backend_override`` for ``init_device_mesh``: every mesh dim's groups get ``timeout_s``."""
    import torch.distributed as dist

    if backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options.is_high_priority_stream = False
    else:
        options = dist.ProcessGroupGloo._Options()
    options._timeout = timedelta(seconds=timeout_s)
    return {dim: (backend, options) for dim in range(len(MESH_DIM_NAMES))}  # by index: either mesh


def init_process_group(device: torch.device, rank: int, world_size: int, timeout_s: float,
                       store_port: int | None = None) -> str:
    """gloo on CPU, NCCL on GPU; a TCPStore client on 127.0.0.1 (local launcher) or env:// (torchrun)."""
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


@dataclass
class RankSession:
    """A rank inside :func:`rank_session`: its device, process group backend, mesh, Plan and
    communicator (whose trace records every collective)."""

    spec: RunSpec
    rank: int
    world_size: int
    device: torch.device
    backend: str
    mesh: object  # torch DeviceMesh (n, m), named ("head_group", "dim_segment")
    plan: Plan | None
    comm: TorchCommunicator

    def prepare(self):
        """This rank's partitioned block, input and output gradient (``verify.RankInputs``)."""
        from helixlib.runtime.verify import prepare_rank

        return prepare_rank(self.plan, self.rank, self.comm, self.spec.model.dtype, self.spec.seed, self.device)

    def gather(self, obj) -> list | None:
        """``obj`` of every rank, in rank order, on rank 0 (None elsewhere)."""
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out


@contextmanager
def rank_session(spec: RunSpec, rank: int, world_size: int, local_rank: int = 0, store_port: int | None = None,
                 with_plan: bool = True) -> Iterator[RankSession]:
    """Set up rank ``rank`` of ``world_size`` for ``spec``; tear it down on exit (also on error).
    The Plan is built first, so a world size that does not match the partition fails before any
    communication; ``with_plan=False`` skips it for runs that only need the mesh (calibration)."""
    import torch.distributed as dist

    plan = build_plan(spec.model, spec.partition, world_size, spec.phase) if with_plan else None
    device = resolve_device(spec, local_rank)
    if device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(cpu_rank_threads(spec.threads_per_rank, local, os.cpu_count()))
    backend = init_process_group(device, rank, world_size, spec.collective_timeout_s, store_port)
    try:
        mesh = spec.partition.build_mesh(device.type, mesh_timeouts(backend, spec.collective_timeout_s))
        sync = torch.cuda.synchronize if device.type == "cuda" else None
        comm = TorchCommunicator(rank, spec.partition, mesh, Trace(rank, synchronize=sync),
                                 timeout_s=spec.collective_timeout_s)
        yield RankSession(spec, rank, world_size, device, backend, mesh, plan, comm)
    finally:
        dist.destroy_process_group()
