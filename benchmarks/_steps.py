"""Timing steps inside launched ranks: every rank starts each step together (barrier), a
step's time is the slowest rank's, and the figure is the median over repeats."""

import statistics
import time

import torch
import torch.distributed as dist


def timed_steps(steps: dict, repeats: int, warmup: int = 1) -> dict | None:
    """``steps``: name -> callable running one forward+backward. Steps alternate, so the
    machine's noise hits them alike. Returns {name: median seconds} on rank 0, None elsewhere."""
    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, fn in steps.items():
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)
            if i >= warmup:
                times[name].append(dt.item())
    if dist.get_rank() != 0:
        return None
    return {name: statistics.median(v) for name, v in times.items()}


def helix_rank(spec, rank: int, world: int, store_port: int, mesh_shape: tuple[int, int] | None = None):
    """Inside a launched rank: process group, DeviceMesh and this rank's block (one thread).
    Returns helixlib.verify.RankInputs, ready for run_step."""
    from torch.distributed.device_mesh import init_device_mesh

    from helixlib.communicator import TorchCommunicator
    from helixlib.distributed import init_process_group
    from helixlib.partition import MESH_DIM_NAMES
    from helixlib.plan import build_plan
    from helixlib.trace import Trace
    from helixlib.verify import prepare_rank

    torch.set_num_threads(1)
    part = spec.partition
    init_process_group(torch.device("cpu"), rank, world, spec.collective_timeout_s, store_port)
    mesh = init_device_mesh("cpu", mesh_shape or (part.head_groups, part.dim_segments), mesh_dim_names=MESH_DIM_NAMES)
    comm = TorchCommunicator(rank, part, mesh, Trace(rank))
    return prepare_rank(build_plan(spec.model, part), rank, comm, spec.model.dtype, spec.seed)
