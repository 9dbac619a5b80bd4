"""The KV side of a Plan in a few numbers: the keys and values every rank holds (and how many
copies of them the partition makes), and for KV shards which positions each shard owns and how
evenly a causal mask spreads the attention work over them.

* KV bytes of a rank: the key and value tensors its attention reads (``scores``' second input,
  ``attn_v``'s second input): in decode the cache after this step's append, in prefill the K and V
  of the positions it owns (what a cache would keep). Unique KV bytes: ``B · positions · K ·
  (d_qk + d_v) · β``. Copies = Σ over ranks / unique: 1 for KV shards and for a head-dim split with
  n ≤ K; n/K when more head groups than KV heads each hold the KV heads they use (Bhatia et al.,
  arXiv 2507.07120, §1: TP beyond K duplicates the cache); m more for the K of ``gather_qk``.
* Load balance (KV shards): the (query, key) pairs a causal mask keeps on each shard, and the
  FLOPs of scores and P·V a causal kernel would spend on them (``2·B·h_g·pairs·(d_qk + d_v)``);
  the Plan's ops count the full masked rectangle, as the head-dim split's do.
"""

from __future__ import annotations

from helixlib.plan import kv_layout
from helixlib.plan.names import StepPhase
from helixlib.plan.ops import numel


def _first(plan, rank: int, name: str):
    return next(o for o in plan.rank_ops(rank) if o.name.split(".")[0] == name)


def kv_bytes(plan, rank: int) -> int:
    """Bytes of the keys and values rank ``rank``'s attention reads (see the module docstring)."""
    k, v = _first(plan, rank, "scores").input_shapes[1], _first(plan, rank, "attn_v").input_shapes[1]
    return (numel(k) + numel(v)) * plan.model.dtype_bytes


def unique_kv_bytes(plan) -> int:
    m = plan.model
    positions = plan.context + 1 if plan.phase == StepPhase.DECODE else m.seq_len
    return m.batch * positions * m.kv_heads * (m.head_dim_qk + m.head_dim_v) * m.dtype_bytes


def visible_pairs(plan, rank: int) -> int:
    """(query, key) pairs of rank ``rank``'s attention that a causal mask keeps (all in decode)."""
    sh, L = plan.shards[rank], plan.model.seq_len
    if plan.phase == StepPhase.DECODE:
        return _first(plan, rank, "scores").output_shape[-1]
    if not plan.partition.kv:
        return L * (L + 1) // 2 if plan.model.causal else L * L
    return kv_layout.causal_pairs(sh.positions, L) if plan.model.causal else L * sh.kv_length


def kv_summary(plan) -> dict:
    """The numbers above, JSON-able (``Plan.to_dict()["kv"]``)."""
    per_rank = [kv_bytes(plan, r) for r in range(plan.world_size)]
    unique = unique_kv_bytes(plan)
    part, m = plan.partition, plan.model
    out = {"kv_heads": m.kv_heads, "kv_share": part.kv_share, "kv_bytes_per_rank": per_rank,
           "unique_kv_bytes": unique, "duplicated_kv_bytes": sum(per_rank) - unique, "copies": sum(per_rank) / unique}
    if part.kv:
        h_g = m.heads // part.head_groups
        pairs = [visible_pairs(plan, r) for r in range(plan.world_size)]
        flops = [2 * m.batch * h_g * n * (m.head_dim_qk + m.head_dim_v) for n in pairs]
        out.update(placement=str(part.kv_placement), tokens_per_block=part.tokens_per_block,
                   positions_per_rank=[s.kv_length for s in plan.shards],
                   visible_pairs_per_rank=pairs, causal_attention_flops_per_rank=flops,
                   imbalance=max(flops) / (sum(flops) / len(flops)))
    return out
