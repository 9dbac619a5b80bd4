"""Megatron-style parallel linear layers (Shoeybi et al., "Megatron-LM", arXiv 1909.08053, §3).
Weights are ``[in_features, out_features]``: a layer is ``x @ W + b``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from helixlib.plan import Comm, MeshDim
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.mappings import gather_from_region, reduce_from_region
from helixlib.runtime.trace import Trace


class ColumnParallelLinear(nn.Module):
    """``x @ W[:, cols] + b[cols]``: x [..., K] replicated -> [..., N_r]. The caller puts one
    ``copy_to_region`` before the layers that share an input (Megatron's f)."""

    def __init__(self, weight, bias, name: str, trace: Trace):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # [K, N_r]
        self.bias = None if bias is None else nn.Parameter(bias.clone())
        self.name, self.trace = name, trace

    def forward(self, x):
        with self.trace.op(self.name):
            return F.linear(x, self.weight.t(), self.bias)


class RowParallelLinear(nn.Module):
    """``Σ_r x_r @ W[rows_r, :]``: x_r [..., K_r] -> [..., N] all-reduced (Megatron's g). The
    replicated bias is returned, not added (Megatron's ``skip_bias_add``), so it is added
    once, after the reduction, fused with the residual."""

    def __init__(self, weight, bias, name: str, reduce: Comm, comm: Communicator, trace: Trace):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # [K_r, N]
        self.bias = nn.Parameter(bias.clone())  # [N], replicated
        self.name, self.reduce, self.comm, self.trace = name, reduce, comm, trace

    def forward(self, x):
        with self.trace.op(self.name):
            partial = x @ self.weight
        return reduce_from_region(partial, self.comm, MeshDim.WORLD, self.reduce), self.bias


class GatheredColumnParallelLinear(ColumnParallelLinear):
    """The plan's concat out-projection: ``x @ W[:, cols_r] + b[cols_r]`` on the gathered heads,
    then an all-gather of the column blocks. x [..., H·d_v] replicated -> ([..., D] replicated,
    None): the same return as :class:`RowParallelLinear` (the bias is already in)."""

    def __init__(self, weight, bias, name: str, comm: Communicator, trace: Trace):
        super().__init__(weight, bias, name, trace)
        self.comm = comm

    def forward(self, x):
        a = super().forward(x)  # [..., D/G]
        return gather_from_region(a, self.comm, MeshDim.WORLD, a.dim() - 1, Comm.OUT_ALLGATHER), None
