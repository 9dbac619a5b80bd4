"""Running one rank of the block and comparing it with the dense reference.

Shared by the single-process simulation (ranks as threads) and the distributed run
(ranks as processes): both call :func:`run_rank` and :func:`compare`.

Errors are relative to the reference's scale, ``max|got - ref| / max|ref|``, against a
dense reference computed in fp64. Tolerances (``TOLERANCE``, forward / backward):

* fp64: 1e-10 / 1e-10. Unit roundoff is 1.1e-16; the longest sum is a dot product over
  max(D, F) ≤ 4096 terms (or B·L tokens for a weight gradient) plus a reduction over
  ≤ 16 ranks, so a different summation order moves results by ~1e-14 relative (measured:
  ~1e-15). 1e-10 leaves orders of margin yet catches any real slip (a missing bias, a
  wrong scale, a dropped reduction all give O(1e-2) or more).
* fp32: 1e-5 / 1e-5. Unit roundoff 6e-8; those sums give ~1e-7 per value and LayerNorm,
  softmax and their backward amplify it (rsqrt of a variance, exp). Measured: forward
  3e-7 (the dense fp32 block alone: 3e-7), backward 1.1e-6 on helix-small; 10x margin.
* bf16: 5e-2 / 1e-1. Unit roundoff 3.9e-3 (8-bit mantissa); each matmul rounds its
  inputs and output once, a block has ~6 roundings in a row, so ~1e-2 forward is the
  error of *any* bf16 block (measured 7e-3, the dense bf16 block 7e-3: ``dense_error``).
  Weight gradients also sum over B·L tokens in bf16: measured up to 4e-2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from helixlib.plan import Plan
from helixlib.plan.shards import slice_weight
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.dense import TORCH_DTYPES, dense_model_block, init_input, init_weights, weight_names
from helixlib.runtime.layer import HelixBlock

TOLERANCE = {"fp64": (1e-10, 1e-10), "fp32": (1e-5, 1e-5), "bf16": (5e-2, 1e-1), "fp16": (1e-2, 2e-2)}


@dataclass
class RankOutput:
    """What one rank produced: its output [B, L, D] and gradients under dense names (sharded)."""

    rank: int
    out: torch.Tensor
    grads: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class RankInputs:
    """One rank's block (weights sliced from the seeded dense init), input x and output grad."""

    block: HelixBlock
    x: torch.Tensor  # [B, L, D], replicated
    grad_out: torch.Tensor  # [B, L, D], replicated


def prepare_rank(plan: Plan, rank: int, comm: Communicator, dtype: str = "fp64", seed: int = 0,
                 device: str | torch.device = "cpu") -> RankInputs:
    tdtype = TORCH_DTYPES[dtype]
    weights = {k: v.to(device) for k, v in init_weights(plan.model, seed, tdtype).items()}
    x, gy = (t.to(device) for t in init_input(plan.model, seed, tdtype))
    return RankInputs(HelixBlock(plan, rank, weights, comm), x, gy)


def sync_gradients(block: HelixBlock) -> None:
    """After backward: sum the gradients of weights other ranks hold copies of (the Plan's
    ``grad_sync`` points, e.g. Wq/Wk/Wv on the p KV shards of a head group), flattened into one
    all-reduce per point, as data parallelism's gradient sync does."""
    for point in block.plan.grad_syncs[block.rank]:
        params = block.attn.replicated(point.name)
        flat = torch.cat([q.grad.reshape(-1) for q in params])
        summed = block.comm.all_reduce(flat, point.group, point.name, "backward")
        for q, g in zip(params, summed.split([q.numel() for q in params])):
            q.grad.copy_(g.view_as(q.grad))


def run_step(inputs: RankInputs, backward: bool = False) -> RankOutput:
    """Forward (and backward) once; times go into the block's trace. Gradients are fresh."""
    block, trace = inputs.block, inputs.block.trace
    block.zero_grad(set_to_none=True)
    x = inputs.x.detach().requires_grad_(backward)
    device = x.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = block(x)
    sync()
    t1 = time.perf_counter()
    trace.timings["forward_s"] = t1 - t0
    grads = {}
    if backward:
        out.backward(inputs.grad_out)
        sync_gradients(block)
        sync()
        trace.timings["backward_s"] = time.perf_counter() - t1
        grads = {name: p.grad.detach() for name, p in block.parameters_by_dense_name().items()}
        grads["x"] = x.grad.detach()
    trace.timings["total_s"] = time.perf_counter() - t0
    return RankOutput(block.rank, out.detach(), grads)


def run_rank(plan: Plan, rank: int, comm: Communicator, dtype: str = "fp64", seed: int = 0,
             backward: bool = False, device: str | torch.device = "cpu") -> RankOutput:
    """Build rank ``rank``'s block and run one step (what the simulation does per thread)."""
    return run_step(prepare_rank(plan, rank, comm, dtype, seed, device), backward)


@dataclass
class Reference:
    out: torch.Tensor
    grads: dict[str, torch.Tensor]


def dense_reference(plan: Plan, seed: int = 0, backward: bool = False, dtype: str = "fp64") -> Reference:
    """The dense block on the same seeded weights and input (on CPU)."""
    m = plan.model
    w = init_weights(m, seed, TORCH_DTYPES[dtype])
    for t in w.values():
        t.requires_grad_(backward)
    x, gy = init_input(m, seed, TORCH_DTYPES[dtype])
    x.requires_grad_(backward)
    out = dense_model_block(x, w, m)
    grads = {}
    if backward:
        out.backward(gy)
        grads = {k: v.grad for k, v in w.items()}
        grads["x"] = x.grad
    return Reference(out.detach(), grads)


def _rel_err(got: torch.Tensor, ref: torch.Tensor, floor: float = 0.0) -> float:
    """max|got - ref| / max(max|ref|, floor)."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    scale = max(ref.abs().max().item(), floor) or 1.0
    return (got - ref).abs().max().item() / scale


@dataclass
class Comparison:
    """Max relative errors of every rank against the reference, and the verdict."""

    dtype: str
    tolerance: tuple[float, float]  # forward, backward
    forward_error: float
    backward_errors: dict[str, float]  # per gradient (dense names and "x"), max over ranks
    dense_error: float | None = None  # the dense block in ``dtype`` vs fp64, for context

    @property
    def backward_error(self) -> float:
        return max(self.backward_errors.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return self.forward_error <= self.tolerance[0] and self.backward_error <= self.tolerance[1]

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "tolerance": {"forward": self.tolerance[0], "backward": self.tolerance[1]},
                "forward_error": self.forward_error,
                "backward_error": self.backward_error, "backward_errors": self.backward_errors,
                "dense_error": self.dense_error, "ok": self.ok}


def compare(plan: Plan, outputs: list[RankOutput], ref: Reference, dtype: str,
            dense_in_dtype: Reference | None = None) -> Comparison:
    """Every rank's output must equal the dense output (it is replicated); every gradient
    must equal the slice of the dense gradient that rank owns."""
    fwd = max(_rel_err(o.out, ref.out) for o in outputs)
    bwd: dict[str, float] = {}
    if ref.grads and outputs[0].grads:
        # The gradient of bk is exactly zero (q·bk is constant along a softmax row), so
        # gradients are measured against max(own scale, scale of dx): rounding noise
        # divided by rounding noise would say nothing.
        floor = ref.grads["x"].abs().max().item()
        for name in weight_names(plan.model) + ("x",):
            bwd[name] = max(
                _rel_err(o.grads[name], ref.grads["x"] if name == "x"
                         else slice_weight(name, ref.grads[name], plan.shards[o.rank]), floor)
                for o in outputs)
    dense_err = None if dense_in_dtype is None else _rel_err(dense_in_dtype.out, ref.out)
    return Comparison(dtype, TOLERANCE[dtype], fwd, bwd, dense_err)
