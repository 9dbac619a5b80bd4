"""The KV-shard attention on one rank (g, j): Helix Parallelism's attention phase (Bhatia et al.,
arXiv 2507.07120, §2; the plan's dataflow is :mod:`helixlib.plan.kv_program`)::

    q = h1 @ Wq[:, group g] + bq                      [B, L_q, h_g, d_qk]  (same on the p shards)
    k, v = h1[:, own] @ W{k,v}[:, group g] + b        [B, L_j, k_g, d]     prefill: owned positions
         = cache + the new token's (owner only)                            decode
    o_j, lse_j = softmax(q·kᵀ/√d, global positions) · v, log Σ exp   [B, L_q, h_g, d_v], [B, L_q, h_g]
    All-to-All over kv_shard (split by head): o_parts [B, L_q, p, h_o, d_v], lse_parts [B, L_q, p, h_o]
    o = Σ_i exp(lse_i − LSE) · o_i, LSE = log Σ_i exp(lse_i)           [B, L_q, h_o, d_v]   exact
    x1 = x + Σ_ranks o @ Wo[rows of the h_o heads, :] + bo              RowParallel over all N ranks

The LSE travels in fp32 (fp64 in an fp64 run), the partial outputs in the run's dtype, as
TensorRT-LLM sends them. HOP-B (``hop_b`` = c > 1, decode only): the attention runs per batch
chunk and each chunk's two All-to-Alls start asynchronously right after it, so they overlap the
next chunks' attention; the combine waits for all of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helixlib.plan import Comm, MeshDim, Plan, slice_weight
from helixlib.plan.kv_program import lse_bytes, new_token_owner
from helixlib.runtime import attention, kvcache
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.layer import projections
from helixlib.runtime.linear import RowParallelLinear
from helixlib.runtime.mappings import all_to_all, copy_to_region
from helixlib.runtime.trace import Trace


class KvShardAttention(nn.Module):
    """Attention of head group g over KV shard j. (x, h1) [B, L_q, D] -> x1 [B, L_q, D]."""

    def __init__(self, plan: Plan, rank: int, w: dict, comm: Communicator, trace: Trace):
        super().__init__()
        part, shard, model = plan.partition, plan.shards[rank], plan.model
        self.plan, self.shard, self.causal = plan, shard, model.causal
        self.p, self.chunks = part.kv_shards, part.hop_b
        self.h_g, self.k_g = shard.heads[1] - shard.heads[0], shard.kv_heads[1] - shard.kv_heads[0]
        self.h_o = self.h_g // self.p
        self.d_qk, self.d_v = model.head_dim_qk, model.head_dim_v
        self.scale = 1.0 / math.sqrt(self.d_qk)
        self.lse_dtype = {8: torch.float64, 4: torch.float32}[lse_bytes(model.dtype_bytes)]
        self.kv_share = part.kv_share
        self.comm, self.trace = comm, trace
        for name, proj in projections(plan, rank, w, trace).items():
            setattr(self, name, proj)
        self.out_proj = RowParallelLinear(slice_weight("Wo", w["Wo"], shard), w["bo"], "out_proj",
                                          Comm.OUT_PROJ_ALLREDUCE, comm, trace)
        self.register_buffer("own", torch.tensor(shard.owned_positions, dtype=torch.long), persistent=False)
        self.cache: kvcache.KvCache | None = None

    def load_cache(self, prompt: torch.Tensor, weights: dict) -> None:
        """Decode: this shard's cache of the prompt's positions; new tokens go to their owner."""
        m, part, j = self.plan.model, self.plan.partition, self.shard.kv_shard
        own = [t for t in self.shard.owned_positions if t < prompt.shape[1]]
        self.cache = kvcache.load(self.shard, weights, prompt, own, self.d_qk,
                                  lambda t: new_token_owner(m, part, t) == j)

    def replicated(self, name: str) -> list[nn.Parameter]:
        """Weights other ranks hold copies of: the group's Q/K/V on its p shards; K/V on kv_share groups."""
        kv = [self.k_proj.weight, self.k_proj.bias, self.v_proj.weight, self.v_proj.bias]
        if name == Comm.QKV_GRAD_ALLREDUCE:
            return [self.q_proj.weight, self.q_proj.bias, *kv]
        return kv if name == Comm.KV_GRAD_ALLREDUCE and self.kv_share > 1 else []

    def _keys_values(self, h1):
        """(k, v, key positions, query positions) of this shard for this step."""
        B, Lq, _ = h1.shape
        if self.cache is None:  # prefill: the rows of the positions this shard owns
            own = self.own.to(h1.device)
            rows = h1[:, own]
            k = self.k_proj(rows).view(B, -1, self.k_g, self.d_qk)
            v = self.v_proj(rows).view(B, -1, self.k_g, self.d_v)
            return k, v, own, torch.arange(Lq, device=h1.device)
        position = self.cache.next_position
        k, v = self.cache.append(self.k_proj(h1).view(B, 1, self.k_g, self.d_qk),
                                 self.v_proj(h1).view(B, 1, self.k_g, self.d_v), self.trace)
        k_pos = torch.tensor(self.cache.positions, device=h1.device)
        return k, v, k_pos, torch.tensor([position], device=h1.device)

    def _attend(self, q, k, v, mask, c: str):
        """Local attention of one batch chunk: (o_part [b, L_q, h_g, d_v], lse [b, L_q, h_g])."""
        op = self.trace.op
        with op(f"scores{c}"):
            s = attention.scores(q, k)  # [b, h_g, L_q, L_j]
        with op(f"softmax{c}"):
            prob, mx, total, empty = attention.masked_softmax(s, self.scale, mask)
        with op(f"lse{c}"):
            lse = attention.row_lse(mx, total, empty, self.lse_dtype)
        with op(f"attn_v{c}"):
            o = attention.attn_v(prob, v)
        return o, lse

    def _pieces(self, t):
        """[b, L_q, h_g, ...] -> [p, b, L_q, h_o, ...]: piece i (heads i·h_o …) for shard i."""
        b, Lq = t.shape[:2]
        return t.reshape(b, Lq, self.p, self.h_o, *t.shape[3:]).movedim(2, 0)

    def forward(self, x, h1):
        """x: block input (for the residual), h1 = LN1(x); both [B, L_q, D]. Returns x1."""
        B, Lq, _ = h1.shape
        c = self.comm
        h1 = copy_to_region(h1, c, MeshDim.WORLD, Comm.QKV_INPUT)
        q = self.q_proj(h1).view(B, Lq, self.h_g, self.d_qk)
        k, v, k_pos, q_pos = self._keys_values(h1)
        mask = attention.causal_mask(q_pos, k_pos) if self.causal else None
        if self.chunks == 1:
            o, lse = self._attend(q, k, v, mask, "")
            o_parts = all_to_all(self._pieces(o), c, MeshDim.KV_SHARD, Comm.O_ALL_TO_ALL).movedim(0, 2)
            lse_parts = all_to_all(self._pieces(lse), c, MeshDim.KV_SHARD, Comm.LSE_ALL_TO_ALL).movedim(0, 2)
        else:
            o_parts, lse_parts = self._hop_b(q, k, v, mask)
        with self.trace.op("combine"):
            o = attention.combine(o_parts, lse_parts)  # [B, L_q, h_o, d_v]
        a, bo = self.out_proj(o.reshape(B, Lq, -1))
        with self.trace.op("residual1"):
            return x + (a + bo)

    def _hop_b(self, q, k, v, mask):
        """HOP-B: chunk i's All-to-Alls start as soon as its attention is done and run while the
        next chunks attend; all are waited for before the combine (forward only: decode)."""
        if torch.is_grad_enabled() and q.requires_grad:
            raise RuntimeError("HOP-B overlaps decode steps only (no backward through async collectives)")
        pending = []
        for i, rows in enumerate(torch.arange(q.shape[0], device=q.device).chunk(self.chunks)):
            c = f".c{i}"
            o, lse = self._attend(q[rows], k[rows], v[rows], mask, c)
            pending.append(self.comm.all_to_all_async(self._pieces(o), MeshDim.KV_SHARD,
                                                      f"{Comm.O_ALL_TO_ALL}{c}", "forward"))
            pending.append(self.comm.all_to_all_async(self._pieces(lse), MeshDim.KV_SHARD,
                                                      f"{Comm.LSE_ALL_TO_ALL}{c}", "forward"))
        done = [h.wait().movedim(0, 2) for h in pending]
        return torch.cat(done[0::2], dim=0), torch.cat(done[1::2], dim=0)
