"""The partitioned pre-LN block on one rank (g, s), built from the Plan's shards.

Reads like the maths (B batch, L sequence, D hidden, h_g = H/n heads of this group, d head
dim, d_s = d/m this rank's segment, F_r = F/G; column/row parallel as in Megatron-LM, Shoeybi
et al. 2019, arXiv 1909.08053)::

    h1 = LN1(x)                                     x, h1: [B, L, D], replicated
    q, k, v = h1 @ W{q,k,v}[:, cols] + b            [B, L, h_g, d_s]  ColumnParallel
    s = Σ_segments q·kᵀ        (reduce_scores)      [B, h_g, L, L]    all-reduce, dim_segment
      = Q·Kᵀ, Q = [q_0 … q_{m-1}] (gather_qk)                         all-gather, dim_segment
    o = softmax(s/√d + mask) · v                     [B, L, h_g, d_s]  exact per segment
    a = Σ_ranks o @ Wo[rows, :]  (allreduce)         [B, L, D]         RowParallel
      = gather_r(concat(o) @ Wo[:, cols_r]) (concat) [B, L, D]         the plan's dataflow
    x1 = x + a + bo;  out = x1 + GELU(LN2(x1) @ W1[:, r]) @ W2[r, :] + b2
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from helixlib.plan import Comm, MeshDim, OutputMode, Plan, QkMode
from helixlib.plan.shards import slice_weight
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.dense import WEIGHT_NAMES
from helixlib.runtime.mappings import (
    all_gather_sum,
    all_reduce_sum,
    copy_to_region,
    gather_from_region,
    reduce_from_region,
)
from helixlib.runtime.trace import Trace


def scaled_softmax(s: torch.Tensor, scale: float, causal: bool) -> torch.Tensor:
    """softmax(s·scale + causal mask) over the last dim; s [..., L, L] (the plan's 5 FLOPs per score)."""
    s = s * scale
    if causal:
        L = s.shape[-1]
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1)


class ColumnParallelLinear(nn.Module):
    """``x @ W[:, cols] + b[cols]``: x [..., K] replicated -> [..., N_r]. The caller puts one
    ``copy_to_region`` before the layers that share an input (Megatron's f)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, name: str, trace: Trace):
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
    then an all-gather of the column blocks. x [..., D] replicated -> ([..., D] replicated, None):
    the same return as :class:`RowParallelLinear` (the bias is already in)."""

    def __init__(self, weight, bias, name: str, comm: Communicator, trace: Trace):
        super().__init__(weight, bias, name, trace)
        self.comm = comm

    def forward(self, x):
        a = super().forward(x)  # [..., D/G]
        return gather_from_region(a, self.comm, MeshDim.WORLD, a.dim() - 1, Comm.OUT_ALLGATHER), None


class HelixAttention(nn.Module):
    """Multi-head attention over this rank's heads and dim segment. x [B, L, D] -> [B, L, D]."""

    def __init__(self, plan: Plan, rank: int, w: dict, comm: Communicator, trace: Trace):
        super().__init__()
        part, shard = plan.partition, plan.shards[rank]
        self.qk_mode, self.output, self.causal = part.qk_mode, part.output, plan.model.causal
        self.h_g = shard.heads[1] - shard.heads[0]
        self.d_s = shard.dim_slice[1] - shard.dim_slice[0]
        self.scale = 1.0 / math.sqrt(plan.model.head_dim)  # the full head's d, not d_s
        if not part.exact:  # segment_local: what a per-partition attention kernel would do
            self.scale = 1.0 / math.sqrt(self.d_s)
        self.comm, self.trace = comm, trace
        for t in "qkv":
            setattr(self, f"{t}_proj", ColumnParallelLinear(
                slice_weight(f"W{t}", w[f"W{t}"], shard), slice_weight(f"b{t}", w[f"b{t}"], shard), f"{t}_proj", trace))
        wo, bo = slice_weight("Wo", w["Wo"], shard), slice_weight("bo", w["bo"], shard)
        if self.output == OutputMode.CONCAT:
            self.out_proj = GatheredColumnParallelLinear(wo, bo, "out_proj", comm, trace)
        else:
            self.out_proj = RowParallelLinear(wo, bo, "out_proj", Comm.OUT_PROJ_ALLREDUCE, comm, trace)

    def forward(self, x, h1):
        """x: block input (for the residual), h1 = LN1(x); both [B, L, D]. Returns x1 [B, L, D]."""
        B, L, _ = h1.shape
        c, op = self.comm, self.trace.op
        h1 = copy_to_region(h1, c, MeshDim.WORLD, Comm.QKV_INPUT)
        q, k, v = (proj(h1).view(B, L, self.h_g, self.d_s) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.qk_mode == QkMode.GATHER_QK:
            q = all_gather_sum(q, c, MeshDim.DIM_SEGMENT, 3, Comm.Q_ALLGATHER)  # [B, L, h_g, d]
            k = all_gather_sum(k, c, MeshDim.DIM_SEGMENT, 3, Comm.K_ALLGATHER)
        with op("scores"):
            s = torch.einsum("blhd,bmhd->bhlm", q, k)  # [B, h_g, L, L], partial if reduce_scores
        if self.qk_mode == QkMode.REDUCE_SCORES:
            s = all_reduce_sum(s, c, MeshDim.DIM_SEGMENT, Comm.SCORES_ALLREDUCE)
        with op("softmax"):
            p = scaled_softmax(s, self.scale, self.causal)
        with op("attn_v"):
            o = torch.einsum("bhlm,bmhd->blhd", p, v)  # [B, L, h_g, d_s]: exact per segment
        if self.output == OutputMode.CONCAT:
            o = all_gather_sum(o, c, MeshDim.DIM_SEGMENT, 3, Comm.O_GATHER_SEGMENTS)  # [B, L, h_g, d]
            o = all_gather_sum(o, c, MeshDim.HEAD_GROUP, 2, Comm.O_GATHER_GROUPS)  # [B, L, H, d]
        a, bo = self.out_proj(o.reshape(B, L, -1))  # [B, L, D] in both modes; bo: None once added
        with op("residual1"):
            return x + a if bo is None else x + (a + bo)


class HelixMLP(nn.Module):
    """FC1 column parallel, GELU, FC2 row parallel. h2 [B, L, D] -> partial-free [B, L, D]."""

    def __init__(self, plan: Plan, rank: int, w: dict, comm: Communicator, trace: Trace):
        super().__init__()
        shard = plan.shards[rank]
        self.comm, self.trace = comm, trace
        self.fc1 = ColumnParallelLinear(slice_weight("W1", w["W1"], shard), slice_weight("b1", w["b1"], shard),
                                        "fc1", trace)
        self.fc2 = RowParallelLinear(slice_weight("W2", w["W2"], shard), w["b2"], "fc2", Comm.FC2_ALLREDUCE,
                                     comm, trace)

    def forward(self, x1, h2):
        h2 = copy_to_region(h2, self.comm, MeshDim.WORLD, Comm.FC1_INPUT)
        u = self.fc1(h2)  # [B, L, F/G]
        with self.trace.op("gelu"):
            z = F.gelu(u)
        y, b2 = self.fc2(z)
        with self.trace.op("residual2"):
            return x1 + (y + b2)


class HelixBlock(nn.Module):
    """One pre-LN transformer block on rank ``rank`` of ``plan``, weights sliced from the
    dense ``weights`` (``helixlib.runtime.dense.init_weights``). forward: x [B, L, D] -> [B, L, D]."""

    def __init__(self, plan: Plan, rank: int, weights: dict, comm: Communicator):
        super().__init__()
        self.plan, self.rank, self.comm, self.trace = plan, rank, comm, comm.trace
        D = plan.model.hidden
        self.ln1 = nn.LayerNorm(D, dtype=weights["Wq"].dtype, device=weights["Wq"].device)
        self.ln2 = nn.LayerNorm(D, dtype=weights["Wq"].dtype, device=weights["Wq"].device)
        with torch.no_grad():
            for ln in ("ln1", "ln2"):
                getattr(self, ln).weight.copy_(weights[f"{ln}.weight"])
                getattr(self, ln).bias.copy_(weights[f"{ln}.bias"])
        self.attn = HelixAttention(plan, rank, weights, comm, self.trace)
        self.mlp = HelixMLP(plan, rank, weights, comm, self.trace)

    def forward(self, x):
        op = self.trace.op
        with op("ln1"):
            h1 = self.ln1(x)
        x1 = self.attn(x, h1)
        with op("ln2"):
            h2 = self.ln2(x1)
        return self.mlp(x1, h2)

    def parameters_by_dense_name(self) -> dict[str, nn.Parameter]:
        """This rank's parameters under the dense names, so grads compare with
        ``slice_weight(name, dense_grad, shard)``."""
        a, m = self.attn, self.mlp
        bo = a.out_proj.bias
        return dict(zip(WEIGHT_NAMES, (
            self.ln1.weight, self.ln1.bias, a.q_proj.weight, a.q_proj.bias, a.k_proj.weight, a.k_proj.bias,
            a.v_proj.weight, a.v_proj.bias, a.out_proj.weight, bo, self.ln2.weight, self.ln2.bias,
            m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias)))
