"""An independent FLOP count: ``torch.utils.flop_counter.FlopCounterMode`` around every op of
the partitioned block, against the Plan's FLOPs per op (2 per multiply-add).

FlopCounterMode counts matmul-like aten ops only (mm, addmm, bmm, convolutions, attention
kernels), at 2 FLOPs per multiply-add; a fused bias add is not counted. So:

* a matmul op of the Plan (projections, scores, P·V, out-projection, FC1, FC2) must count
  exactly the Plan's ``2·batch·M·K·N``;
* an element-wise op (LayerNorm, softmax, GELU, adds) counts 0 here, whatever the Plan's
  per-element convention says;
* a training step's backward counts exactly 2× the forward matmul FLOPs (an input-gradient
  and a weight-gradient GEMM per GEMM: every operand of every matmul needs a gradient).

The ranks run as threads of one process (``helixlib.runtime.simulate``); dispatch modes are
per thread, so each rank counts only its own ops.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from torch.utils.flop_counter import FlopCounterMode

from helixlib.plan import Plan
from helixlib.runtime.simulate import simulate_ranks
from helixlib.runtime.trace import Trace


class FlopCountingTrace(Trace):
    """A :class:`~helixlib.runtime.trace.Trace` that also counts each op's FLOPs (``flops[name]``)."""

    def __init__(self, rank: int):
        super().__init__(rank)
        self.flops: dict[str, int] = {}

    @contextmanager
    def op(self, name: str, phase: str = "forward"):
        with FlopCounterMode(display=False) as counter, super().op(name, phase):
            yield
        self.flops[name] = self.flops.get(name, 0) + counter.get_total_flops()


@dataclass
class FlopComparison:
    """Per op of one rank: (Plan FLOPs, counted FLOPs); and the training step's totals."""

    rank: int
    kinds: dict[str, str]  # op -> kind
    plan: dict[str, int]
    counted: dict[str, int]
    step_counted: int | None = None  # forward + backward, counted around the whole step

    @property
    def matmul_mismatches(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k == "matmul" and self.plan[n] != self.counted[n]]

    @property
    def plan_matmul(self) -> int:
        return sum(f for n, f in self.plan.items() if self.kinds[n] == "matmul")

    def rows(self) -> list[list]:
        return [[n, self.kinds[n], self.plan[n], self.counted[n]] for n in self.plan]


def count_flops(plan: Plan, rank: int = 0, backward: bool = True, dtype: str = "fp64") -> FlopComparison:
    """Run every rank of ``plan`` (threads) with FLOP-counting traces and compare rank ``rank``."""
    traces = [FlopCountingTrace(r) for r in range(plan.world_size)]
    step = {}

    def around_step(r, run):
        if r != rank:
            return run()
        with FlopCounterMode(display=False) as counter:
            out = run()
        step["flops"] = counter.get_total_flops()
        return out

    simulate_ranks(plan, dtype, backward=backward, traces=traces, around_step=around_step)
    ops = plan.rank_ops(rank)
    return FlopComparison(rank, {o.name: o.kind for o in ops}, {o.name: o.flops for o in ops},
                          {o.name: traces[rank].flops.get(o.name, 0) for o in ops}, step.get("flops"))
