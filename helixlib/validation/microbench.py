"""Microbenchmarks that run inside launched CPU ranks, every rank at once — the setting of
the real run, where n·m single-threaded ranks compute side by side and share the cores.

:func:`microbench_rank` is the ``rank_fn`` ``helixlib.validation.calibrate`` hands to
``launch_local``. Each measurement is :func:`helixlib.runtime.steps.timed_steps` with ``span``: all ranks
start together, the time runs from the first rank's start to the last rank's end, the
figure is the median over repeats. Rank 0
returns raw rows (seconds per call, with the FLOPs and bytes the Plan would count);
``helixlib.validation.calibrate`` fits them.

* **GEMMs** ``[b]×[M,K]·[K,N]`` for a table of (M, K, N) per dtype; small shapes run as a
  batch ``b`` large enough that one call is ``min_call_flops`` (the per-call cost is
  measured on its own, below), so a row is the shape's steady throughput;
* **element-wise ops**, the layer's own: LayerNorm, the scaled masked softmax, GELU and
  the biased residual add, at several sizes (FLOPs per element as the Plan counts them);
* **per-op overhead**: a one-element op with autograd recording, inside ``Trace.op``,
  as every op of the block runs;
* **collectives** through :class:`~helixlib.runtime.communicator.TorchCommunicator` (as the
  block calls them): all-reduce, all-gather, reduce-scatter of ``S`` bytes (nccl-tests
  size: the reduced tensor, the gathered output, the scattered input) over groups of
  ``p`` consecutive ranks, all ``G/p`` groups at once (as a partition's groups run).
"""

from __future__ import annotations

import functools
import math
import resource
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helixlib.estimate.strategies import (
    FLOPS as ELEMENTWISE_FLOPS,  # the Plan's per-element counts, "add" with its bias
)
from helixlib.plan.names import ELEMENTWISE_KINDS, CollectiveKind, MeshDim, Phase
from helixlib.runtime.dense import TORCH_DTYPES
from helixlib.runtime.session import mesh_timeouts, rank_session
from helixlib.runtime.steps import timed_steps

MEASURED_KINDS = ("all_reduce", "all_gather", "reduce_scatter")


@dataclass(frozen=True)
class Suite:
    """What to measure (picklable: sent to every rank). Sizes in elements or bytes."""

    dtypes: tuple[str, ...]
    gemm_shapes: tuple[tuple[int, int, int], ...]  # (M, K, N)
    elementwise_elements: tuple[int, ...]  # output elements per call
    row: int  # row length of the LayerNorm and softmax inputs
    collective_bytes: tuple[int, ...]  # S, nccl-tests size
    group_sizes: tuple[int, ...]
    repeats: int = 3
    min_call_flops: float = 4e6  # batch small GEMMs up to this
    # seconds per timed repeat: long enough that the ranks' staggered start from the barrier
    # (a few ms with 16 ranks on 2 cores) is a small part of the span
    step_s: float = 0.05

    def gemm_batch(self, M: int, K: int, N: int) -> int:
        return max(1, math.ceil(self.min_call_flops / (2 * M * K * N)))


def _span(fn, calls: int, repeats: int, warmup: int = 0) -> float | None:
    """Median span of ``calls`` calls of ``fn`` in every rank (rank 0; None elsewhere)."""
    def step():
        for _ in range(calls):
            fn()
    t = timed_steps({"step": step}, repeats, warmup, span=True)
    return None if t is None else t["step"]


def _per_call(fn, repeats: int, step_s: float | None = None) -> float | None:
    """Seconds per call of ``fn``: the span from the first rank's start to the last rank's end,
    divided by the calls, median over repeats; None off rank 0. With ``step_s``, pilot spans
    (rank 0 decides, every rank follows) grow the calls until a repeat lasts about that long."""
    import torch.distributed as dist

    calls, warmup = 1, 1
    while step_s is not None:
        t = _span(fn, calls, 1, warmup)
        warmup = 0
        n = torch.tensor([0 if t is None else (calls * 8 if t < step_s / 4 else -max(1, round(calls * step_s / t)))])
        dist.broadcast(n, 0)
        calls = abs(int(n))
        if n < 0:
            break
    t = _span(fn, calls, repeats, warmup)
    return None if t is None else t / calls


def _say(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[calibrate] {msg}", file=sys.stderr, flush=True)


def measure_overhead(suite: Suite, rank: int) -> float | None:
    """Fixed cost of one op of the block: a one-element add recorded by autograd, inside ``Trace.op``."""
    from helixlib.runtime.trace import Trace

    trace = Trace(rank)
    a = torch.ones(1, requires_grad=True)
    b = torch.ones(1)

    def op():
        with trace.op("probe"):
            a * b
        trace.ops.clear()
    return _per_call(op, suite.repeats, suite.step_s)


def measure_gemms(suite: Suite, rank: int, dtype: str) -> list[dict]:
    rows = []
    tdtype = TORCH_DTYPES[dtype]
    for i, (M, K, N) in enumerate(suite.gemm_shapes):
        b = suite.gemm_batch(M, K, N)
        a = torch.randn(b, M, K, dtype=tdtype).squeeze(0)
        w = torch.randn(b, K, N, dtype=tdtype).squeeze(0)
        flops = 2 * b * M * K * N
        t = _per_call(functools.partial(torch.matmul, a, w), suite.repeats, suite.step_s)
        if t is not None:
            rows.append({"dtype": dtype, "M": M, "K": K, "N": N, "batch": b, "flops": flops, "seconds": t})
            _say(rank, f"matmul {dtype} {i + 1}/{len(suite.gemm_shapes)}: [{b}]x[{M},{K}]x[{K},{N}] "
                       f"{flops / t / 1e9:.2f} GFLOP/s per rank")
    return rows


def _elementwise_op(kind: str, n: int, row: int, tdtype):
    """(callable, bytes moved as the Plan counts them) for ``n`` output elements."""
    x = torch.randn(n // row, row, dtype=tdtype)
    beta = x.element_size()
    if kind == "layernorm":
        w, b = torch.ones(row, dtype=tdtype), torch.zeros(row, dtype=tdtype)
        return (lambda: F.layer_norm(x, (row,), w, b)), (2 * n + 2 * row) * beta
    if kind == "softmax":
        from helixlib.runtime.layer import scaled_softmax

        s = torch.randn(n // (row * row), row, row, dtype=tdtype)
        return (lambda: scaled_softmax(s, 0.125, True)), 2 * n * beta
    if kind == "gelu":
        return (lambda: F.gelu(x)), 2 * n * beta
    if kind == "add":
        y, bias = torch.randn_like(x), torch.randn(row, dtype=tdtype)
        return (lambda: x + (y + bias)), (3 * n + row) * beta
    raise ValueError(kind)


def measure_elementwise(suite: Suite, rank: int, dtype: str) -> list[dict]:
    rows = []
    for kind in ELEMENTWISE_KINDS:
        for n in suite.elementwise_elements:
            fn, nbytes = _elementwise_op(kind, n, suite.row, TORCH_DTYPES[dtype])
            t = _per_call(fn, suite.repeats, suite.step_s)
            if t is not None:
                rows.append({"dtype": dtype, "kind": kind, "elements": n, "flops": ELEMENTWISE_FLOPS[kind] * n,
                             "bytes": nbytes, "seconds": t})
        _say(rank, f"element-wise {dtype} {kind}: {len(suite.elementwise_elements)} sizes")
    return rows


def _collective_once(comm, kind: str, t: torch.Tensor) -> None:
    """One call of ``kind`` over this rank's group of the mesh's dim_segment dimension."""
    if kind == CollectiveKind.ALL_REDUCE:
        comm.all_reduce(t, MeshDim.DIM_SEGMENT, "probe", Phase.FORWARD)
    elif kind == CollectiveKind.ALL_GATHER:
        comm.all_gather(t, MeshDim.DIM_SEGMENT, 0, "probe", Phase.FORWARD)
    else:
        comm.reduce_scatter(t, MeshDim.DIM_SEGMENT, 0, "probe", Phase.FORWARD)
    comm.trace.clear()


def measure_collectives(suite: Suite, rank: int, world: int, dtype: str, timeout_s: float = 60.0) -> list[dict]:
    """Every kind and size over groups of each size p (all G/p groups at once); the groups get
    ``timeout_s``, as the run's do."""
    from helixlib.plan import Partition
    from helixlib.runtime.communicator import TorchCommunicator

    rows = []
    tdtype = TORCH_DTYPES[dtype]
    beta = torch.tensor([], dtype=tdtype).element_size()
    for p in suite.group_sizes:
        part = Partition(world // p, p)  # the groups of p ranks are the mesh's dim_segment groups
        comm = TorchCommunicator(rank, part, part.build_mesh("cpu", mesh_timeouts("gloo", timeout_s)))
        for kind in (CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER):
            for S in suite.collective_bytes:
                t = torch.randn(S // beta // (p if kind == CollectiveKind.ALL_GATHER else 1), dtype=tdtype)
                sec = _per_call(functools.partial(_collective_once, comm, kind, t), suite.repeats + 1)
                if sec is not None:
                    rows.append({"kind": kind, "p": p, "bytes": S, "seconds": sec})
            _say(rank, f"{kind} over groups of {p}: {len(suite.collective_bytes)} sizes")
    return rows


def microbench_rank(spec, rank: int, world: int, local_rank: int = 0, store_port: int | None = None,
                    progress=None, suite: Suite | None = None) -> dict | None:
    """One rank of the calibration run (``spec`` only carries the world size and timeouts)."""
    with rank_session(spec, rank, world, store_port=store_port, with_plan=False):
        out = {"world_size": world, "threads_per_rank": torch.get_num_threads(), "gemm": [], "elementwise": [],
               "start_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        out["overhead_s"] = measure_overhead(suite, rank)
        if rank == 0:
            _say(rank, f"per-op overhead: {out['overhead_s'] * 1e6:.1f} µs")
        for dtype in suite.dtypes:
            out["gemm"] += measure_gemms(suite, rank, dtype)
            out["elementwise"] += measure_elementwise(suite, rank, dtype)
        out["collectives"] = measure_collectives(suite, rank, world, suite.dtypes[0], spec.collective_timeout_s)
        return out if rank == 0 else None
