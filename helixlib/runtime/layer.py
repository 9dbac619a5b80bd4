"""The partitioned pre-LN block on one rank, built from the Plan's shards.

Head-dim split, rank (g, s) — reads like the maths (B batch, L sequence, D hidden, h_g = H/n
heads of this group, k_g its KV heads, d head dim, d_s = d/m this rank's segment, F_r = F/G;
column/row parallel as in Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053)::

    h1 = LN1(x)                                     x, h1: [B, L, D], replicated
    q, k, v = h1 @ W{q,k,v}[:, cols] + b            [B, L, h_g | k_g, d_s]  ColumnParallel
    s = Σ_segments q·kᵀ        (reduce_scores)      [B, h_g, L, L]    all-reduce, dim_segment
      = Q·Kᵀ, Q = [q_0 … q_{m-1}] (gather_qk)                         all-gather, dim_segment
    o = softmax(s/√d + mask) · v                     [B, L, h_g, d_s]  exact per segment
    a = Σ_ranks o @ Wo[rows, :]  (allreduce)         [B, L, D]         RowParallel
      = gather_r(concat(o) @ Wo[:, cols_r]) (concat) [B, L, D]         the plan's dataflow
    x1 = x + a + bo;  out = x1 + MLP(LN2(x1))        (helixlib.runtime.mlp)

Query head h reads KV head h // (H/K) (grouped-query attention). In decode, k and v of the new
token are appended to the rank's cache (:mod:`helixlib.runtime.kvcache`) and the scores are
[B, h_g, 1, S+1]. The KV-shard attention is :mod:`helixlib.runtime.kv_layer`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helixlib.plan import Comm, MeshDim, OutputMode, Plan, QkMode
from helixlib.plan.shards import slice_weight
from helixlib.runtime import attention, kvcache
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.dense import weight_names
from helixlib.runtime.linear import ColumnParallelLinear, GatheredColumnParallelLinear, RowParallelLinear
from helixlib.runtime.mappings import all_gather_sum, all_reduce_sum, copy_to_region
from helixlib.runtime.mlp import HelixMLP
from helixlib.runtime.trace import Trace

__all__ = ["HelixAttention", "HelixBlock", "HelixMLP", "scaled_softmax"]


def scaled_softmax(s: torch.Tensor, scale: float, causal: bool) -> torch.Tensor:
    """softmax(s·scale + causal mask) over the last dim; s [..., L_q, L_k], the queries being the
    last L_q of the L_k positions (the plan's 5 FLOPs per score)."""
    s = s * scale
    if causal:
        Lq, Lk = s.shape[-2:]
        q_pos = torch.arange(Lk - Lq, Lk, device=s.device)
        s = s.masked_fill(attention.causal_mask(q_pos, torch.arange(Lk, device=s.device)), float("-inf"))
    return torch.softmax(s, dim=-1)


def projections(plan: Plan, rank: int, w: dict, trace: Trace) -> dict[str, ColumnParallelLinear]:
    """q_proj, k_proj, v_proj: the rank's columns of Wq, Wk, Wv (column parallel)."""
    shard = plan.shards[rank]
    return {f"{t}_proj": ColumnParallelLinear(slice_weight(f"W{t}", w[f"W{t}"], shard),
                                              slice_weight(f"b{t}", w[f"b{t}"], shard), f"{t}_proj", trace)
            for t in "qkv"}


class HelixAttention(nn.Module):
    """Attention over this rank's heads and dim segment. (x, h1) [B, L, D] -> x1 [B, L, D]."""

    def __init__(self, plan: Plan, rank: int, w: dict, comm: Communicator, trace: Trace):
        super().__init__()
        part, shard = plan.partition, plan.shards[rank]
        self.shard = shard
        self.qk_mode, self.output, self.causal = part.qk_mode, part.output, plan.model.causal
        self.h_g, self.k_g = shard.heads[1] - shard.heads[0], shard.kv_heads[1] - shard.kv_heads[0]
        self.d_s = shard.dim_slice[1] - shard.dim_slice[0]
        self.scale = 1.0 / math.sqrt(plan.model.head_dim)  # the full head's d, not d_s
        if not part.exact:  # segment_local: what a per-partition attention kernel would do
            self.scale = 1.0 / math.sqrt(self.d_s)
        self.comm, self.trace = comm, trace
        self.kv_share = part.kv_share
        for name, proj in projections(plan, rank, w, trace).items():
            setattr(self, name, proj)
        wo, bo = slice_weight("Wo", w["Wo"], shard), slice_weight("bo", w["bo"], shard)
        if self.output == OutputMode.CONCAT:
            self.out_proj = GatheredColumnParallelLinear(wo, bo, "out_proj", comm, trace)
        else:
            self.out_proj = RowParallelLinear(wo, bo, "out_proj", Comm.OUT_PROJ_ALLREDUCE, comm, trace)
        self.cache: kvcache.KvCache | None = None

    def load_cache(self, prompt: torch.Tensor, weights: dict) -> None:
        """Decode: this rank's cache of the prompt (every position; K whole heads with gather_qk)."""
        k_width = self.shard.head_dim if self.qk_mode == QkMode.GATHER_QK else self.d_s
        S = prompt.shape[1]
        self.cache = kvcache.load(self.shard, weights, prompt, list(range(S)), k_width, lambda t: True)

    def replicated(self, name: str) -> list[nn.Parameter]:
        """Weights other ranks hold copies of, by the Plan's gradient-sync name."""
        if name == Comm.KV_GRAD_ALLREDUCE and self.kv_share > 1:
            return [self.k_proj.weight, self.k_proj.bias, self.v_proj.weight, self.v_proj.bias]
        return []

    def forward(self, x, h1):
        """x: block input (for the residual), h1 = LN1(x); both [B, L, D]. Returns x1 [B, L, D]."""
        B, L, _ = h1.shape
        c, op = self.comm, self.trace.op
        h1 = copy_to_region(h1, c, MeshDim.WORLD, Comm.QKV_INPUT)
        q = self.q_proj(h1).view(B, L, self.h_g, self.d_s)
        k = self.k_proj(h1).view(B, L, self.k_g, self.d_s)
        v = self.v_proj(h1).view(B, L, self.k_g, -1)
        if self.qk_mode == QkMode.GATHER_QK:
            q = all_gather_sum(q, c, MeshDim.DIM_SEGMENT, 3, Comm.Q_ALLGATHER)  # [B, L, h_g, d]
            k = all_gather_sum(k, c, MeshDim.DIM_SEGMENT, 3, Comm.K_ALLGATHER)
        if self.cache is not None:  # decode: [B, S+1, k_g, ·] after the new token
            k, v = self.cache.append(k, v, self.trace)
        with op("scores"):
            s = attention.scores(q, k)  # [B, h_g, L, S], partial if reduce_scores
        if self.qk_mode == QkMode.REDUCE_SCORES:
            s = all_reduce_sum(s, c, MeshDim.DIM_SEGMENT, Comm.SCORES_ALLREDUCE)
        with op("softmax"):
            p = scaled_softmax(s, self.scale, self.causal)
        with op("attn_v"):
            o = attention.attn_v(p, v)  # [B, L, h_g, d_s]: exact per segment
        if self.output == OutputMode.CONCAT:
            o = all_gather_sum(o, c, MeshDim.DIM_SEGMENT, 3, Comm.O_GATHER_SEGMENTS)  # [B, L, h_g, d]
            o = all_gather_sum(o, c, MeshDim.HEAD_GROUP, 2, Comm.O_GATHER_GROUPS)  # [B, L, H, d]
        a, bo = self.out_proj(o.reshape(B, L, -1))  # [B, L, D] in both modes; bo: None once added
        with op("residual1"):
            return x + a if bo is None else x + (a + bo)


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
        if plan.partition.kv:
            from helixlib.runtime.kv_layer import KvShardAttention

            self.attn = KvShardAttention(plan, rank, weights, comm, self.trace)
        else:
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
        a = self.attn
        named = {"ln1.weight": self.ln1.weight, "ln1.bias": self.ln1.bias, "Wq": a.q_proj.weight,
                 "bq": a.q_proj.bias, "Wk": a.k_proj.weight, "bk": a.k_proj.bias, "Wv": a.v_proj.weight,
                 "bv": a.v_proj.bias, "Wo": a.out_proj.weight, "bo": a.out_proj.bias, "ln2.weight": self.ln2.weight,
                 "ln2.bias": self.ln2.bias, **self.mlp.named_dense()}
        return {name: named[name] for name in weight_names(self.plan.model)}
