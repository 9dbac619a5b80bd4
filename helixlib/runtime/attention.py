"""The attention arithmetic both partitions share, as plain tensor functions (the layers time and
communicate around them).

Grouped-query attention: query head h reads KV head ``h // (h_q/h_kv)`` (SDPA's ``enable_gqa``,
``repeat_interleave`` order). Shapes: q [B, L_q, h_q, d], k [B, L_k, h_kv, d], v [B, L_k, h_kv, d_v],
scores and probabilities [B, h_q, L_q, L_k], output [B, L_q, h_q, d_v].

The KV-shard pieces (Milakov & Gimelshein, "Online normalizer calculation for softmax",
arXiv 1805.02867; Flash-Decoding, Dao et al. 2023; Helix, arXiv 2507.07120): a shard's softmax over
its own keys is exact up to a per-row factor, carried as the row's log-sum-exp; a row with no
visible key on this shard (a causal query before every position the shard owns) gets output 0 and
LSE −inf, a no-op in the combine (TensorRT-LLM's ``_helix_sanitize_empty_kv``).
"""

from __future__ import annotations

import torch


def scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q·kᵀ per head: [B, h_q, L_q, L_k] (unscaled)."""
    if q.shape[2] == k.shape[2]:
        return torch.einsum("blhd,bmhd->bhlm", q, k)
    B, Lq, h, d = q.shape
    g = k.shape[2]
    s = torch.einsum("blgrd,bmgd->bgrlm", q.reshape(B, Lq, g, h // g, d), k)
    return s.reshape(B, h, Lq, k.shape[1])


def attn_v(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """p [B, h_q, L_q, L_k] · v [B, L_k, h_kv, d_v] -> [B, L_q, h_q, d_v]."""
    if p.shape[1] == v.shape[2]:
        return torch.einsum("bhlm,bmhd->blhd", p, v)
    B, h, Lq, Lk = p.shape
    g = v.shape[2]
    o = torch.einsum("bgrlm,bmgd->blgrd", p.reshape(B, g, h // g, Lq, Lk), v)
    return o.reshape(B, Lq, h, v.shape[3])


def causal_mask(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """[L_q, L_k] bool, True where key position > query position (masked)."""
    return k_pos[None, :] > q_pos[:, None]


def masked_softmax(s: torch.Tensor, scale: float, mask: torch.Tensor | None):
    """softmax(s·scale, masked) over the last dim, safe for rows with no visible key.
    Returns (p, row max, row sum, empty rows): p [..., L_q, L_k] in s's dtype; the others
    [..., L_q, 1], in fp32 at least (half-precision scores are softmaxed in fp32, as
    ``torch.softmax`` and flash kernels do: the row statistics become the LSE the combine weighs
    shards by). The max is a constant shift (detached): the softmax and its LSE do not depend on it."""
    z = s.float() * scale if s.element_size() < 4 else s * scale
    if mask is not None:
        z = z.masked_fill(mask, float("-inf"))
    m = z.amax(-1, keepdim=True).detach()
    empty = torch.isinf(m)
    m = torch.where(empty, torch.zeros_like(m), m)
    e = torch.exp(z - m)
    total = e.sum(-1, keepdim=True)
    total = torch.where(empty, torch.ones_like(total), total)
    return (e / total).to(s.dtype), m, total, empty


def row_lse(m: torch.Tensor, total: torch.Tensor, empty: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """log Σ exp(z) per row from the softmax's max and sum, −inf for an empty row; [B, h, L_q, 1]
    -> [B, L_q, h] in ``dtype`` (the All-to-All's LSE precision)."""
    lse = torch.where(empty, torch.full_like(m, float("-inf")), m + torch.log(total))
    return lse.squeeze(-1).transpose(1, 2).to(dtype)


def combine(o_parts: torch.Tensor, lse_parts: torch.Tensor) -> torch.Tensor:
    """The exact combine: LSE = log Σ_i exp(LSE_i), O = Σ_i exp(LSE_i − LSE) · O_i.
    o_parts [B, L_q, p, h, d_v], lse_parts [B, L_q, p, h] -> [B, L_q, h, d_v]. The weights and the
    sum in the LSE's precision (fp32 for bf16 partials, as TensorRT-LLM's helixPostProcess)."""
    lse = torch.logsumexp(lse_parts, dim=2, keepdim=True)
    weights = torch.exp(lse_parts - lse)
    return (weights.unsqueeze(-1) * o_parts.to(weights.dtype)).sum(2).to(o_parts.dtype)
