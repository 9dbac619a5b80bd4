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


def owned_positions(shard: int, upto: int, prompt_len: int, kv_shards: int, tokens_per_block: int,
                    placement: str) -> list[int]:
    """The positions ``< upto`` that ``shard`` owns, ascending."""
    return [t for t in range(upto) if owner(t, prompt_len, kv_shards, tokens_per_block, placement) == shard]


def as_ranges(positions: list[int]) -> list[tuple[int, int]]:
    """Ascending positions as half-open runs ``[lo, hi)``."""
    out: list[tuple[int, int]] = []
    for t in positions:
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1)
        else:
            out.append((t, t + 1))
    return out


def causal_pairs(positions: list[int], queries: int) -> int:
    """(query, key) pairs a causal mask keeps when queries ``0..queries-1`` attend to the keys at
    ``positions``: key t is seen by the queries t..queries-1."""
    return sum(max(queries - t, 0) for t in positions)
