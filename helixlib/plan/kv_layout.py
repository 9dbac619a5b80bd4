"""Which KV positions each KV shard owns (Helix Parallelism's KV-sequence split).

Positions are cut into blocks of ``tokens_per_block`` tokens (TensorRT-LLM's KV-cache blocks; its
Helix example uses 32). With ``round_robin`` placement block b lives on shard ``b mod p``
(TensorRT-LLM's ``partition_context_for_helix`` for the prompt and its decode rule
``decode_block_id % cp_size == cp_rank`` for new tokens: the cache grows evenly). With
``contiguous`` placement the ``nb`` blocks of the prompt are cut into p runs (the lowest shards
get one more block when p does not divide nb, as ``torch.tensor_split``) and every later block
(new decode tokens) goes to the last shard.

A query at position i sees key position t when t ≤ i (causal), wherever t lives: a shard masks
with the *global* positions it owns, so its partial output is exact for its keys.
"""

from __future__ import annotations

from helixlib.plan.names import KvPlacement

#: TensorRT-LLM's example block size (``cp_config.tokens_per_block: 32``)
TOKENS_PER_BLOCK = 32


def n_blocks(positions: int, tokens_per_block: int) -> int:
    """Blocks of ``tokens_per_block`` needed for ``positions`` tokens (the last may be partial)."""
    return -(-positions // tokens_per_block)


def default_tokens_per_block(context: int, kv_shards: int) -> int:
    """32, or the largest power of two below it that still gives every shard two blocks of the
    context (so that round-robin and contiguous placement differ), else one block; 1 at least."""
    for need in (2 * kv_shards, kv_shards):
        tpb = TOKENS_PER_BLOCK
        while tpb > 1 and n_blocks(context, tpb) < need:
            tpb //= 2
        if n_blocks(context, tpb) >= need:
            return tpb
    return 1


def block_owner(block: int, prompt_blocks: int, kv_shards: int, placement: str) -> int:
    """The shard that owns ``block`` (a prompt has ``prompt_blocks`` blocks)."""
    if placement == KvPlacement.ROUND_ROBIN:
        return block % kv_shards
    if block >= prompt_blocks:  # contiguous: decode tokens grow the last run
        return kv_shards - 1
    base, extra = divmod(prompt_blocks, kv_shards)
    # shards 0..extra-1 hold base+1 blocks, the others base
    cut = extra * (base + 1)
    return block // (base + 1) if block < cut else extra + (block - cut) // max(base, 1)


def owner(position: int, prompt_len: int, kv_shards: int, tokens_per_block: int, placement: str) -> int:
    """The shard that owns KV ``position`` of a sequence whose first ``prompt_len`` tokens were
    placed at once."""
    return block_owner(position // tokens_per_block, n_blocks(prompt_len, tokens_per_block), kv_shards, placement)


def owned_blocks(shard: int, upto: int, prompt_len: int, kv_shards: int, tokens_per_block: int,
                 placement: str) -> list[int]:
    """The blocks holding positions ``< upto`` that ``shard`` owns, ascending (O(blocks / p))."""
    total, prompt = n_blocks(upto, tokens_per_block), n_blocks(prompt_len, tokens_per_block)
    if placement == KvPlacement.ROUND_ROBIN:
        return list(range(shard, total, kv_shards))
    base, extra = divmod(prompt, kv_shards)
    lo = shard * base + min(shard, extra)
    blocks = list(range(lo, min(lo + base + int(shard < extra), total)))
    return blocks + (list(range(prompt, total)) if shard == kv_shards - 1 else [])


def owned_ranges(shard: int, upto: int, prompt_len: int, kv_shards: int, tokens_per_block: int,
                 placement: str) -> list[tuple[int, int]]:
    """The positions ``< upto`` that ``shard`` owns, as ascending half-open runs ``[lo, hi)``."""
    out: list[tuple[int, int]] = []
    for b in owned_blocks(shard, upto, prompt_len, kv_shards, tokens_per_block, placement):
        lo, hi = b * tokens_per_block, min((b + 1) * tokens_per_block, upto)
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def count(ranges) -> int:
    """Positions in half-open runs."""
    return sum(hi - lo for lo, hi in ranges)


def causal_pairs(ranges, queries: int) -> int:
    """(query, key) pairs a causal mask keeps when queries ``0..queries-1`` attend to the keys in
    ``ranges``: key t is seen by the queries t..queries-1, ``queries - t`` of them."""
    total = 0
    for lo, hi in ranges:
        hi = min(hi, queries)
        if hi > lo:  # Σ_{t=lo}^{hi-1} (queries - t)
            total += (hi - lo) * queries - (lo + hi - 1) * (hi - lo) // 2
    return total
