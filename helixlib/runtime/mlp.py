"""The MLP tensor-parallel over all ranks of the Plan (Megatron-LM, Shoeybi et al. 2019, arXiv
1909.08053): FC1 (and SwiGLU's FC3, the up projection) column parallel, the activation on this
rank's F/G columns, FC2 row parallel with one all-reduce. h2 [B, L, D] -> out [B, L, D]::

    u = h2 @ W1[:, r] + b1[r]                       [B, L, F/G]
    z = GELU(u)            or  silu(u) · (h2 @ W3[:, r] + b3[r])   (SwiGLU)
    out = x1 + Σ_ranks z @ W2[r, :] + b2            [B, L, D]
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from helixlib.plan import Comm, MeshDim, Plan
from helixlib.plan.shards import slice_weight
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.linear import ColumnParallelLinear, RowParallelLinear
from helixlib.runtime.mappings import copy_to_region
from helixlib.runtime.trace import Trace


class HelixMLP(nn.Module):
    """FC1 (FC3) column parallel, GELU (SwiGLU), FC2 row parallel. (x1, h2) [B, L, D] -> [B, L, D]."""

    def __init__(self, plan: Plan, rank: int, w: dict, comm: Communicator, trace: Trace):
        super().__init__()
        shard = plan.shards[rank]
        self.comm, self.trace, self.swiglu = comm, trace, plan.model.mlp == "swiglu"
        self.fc1 = ColumnParallelLinear(slice_weight("W1", w["W1"], shard), slice_weight("b1", w["b1"], shard),
                                        "fc1", trace)
        if self.swiglu:
            self.fc3 = ColumnParallelLinear(slice_weight("W3", w["W3"], shard), slice_weight("b3", w["b3"], shard),
                                            "fc3", trace)
        self.fc2 = RowParallelLinear(slice_weight("W2", w["W2"], shard), w["b2"], "fc2", Comm.FC2_ALLREDUCE,
                                     comm, trace)

    def forward(self, x1, h2):
        h2 = copy_to_region(h2, self.comm, MeshDim.WORLD, Comm.FC1_INPUT)
        u = self.fc1(h2)  # [B, L, F/G]
        if self.swiglu:
            u3 = self.fc3(h2)
            with self.trace.op("swiglu"):
                z = F.silu(u) * u3
        else:
            with self.trace.op("gelu"):
                z = F.gelu(u)
        y, b2 = self.fc2(z)
        with self.trace.op("residual2"):
            return x1 + (y + b2)

    def named_dense(self) -> dict:
        """This MLP's parameters under the dense weight names."""
        out = {"W1": self.fc1.weight, "b1": self.fc1.bias, "W2": self.fc2.weight, "b2": self.fc2.bias}
        if self.swiglu:
            out.update(W3=self.fc3.weight, b3=self.fc3.bias)
        return out
