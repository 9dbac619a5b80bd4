"""One rank's KV cache for decoding: the keys and values of the positions it holds, and where
the next token's K and V go.

The cache is loaded from the prompt's block inputs (``load``: LN1 and the K/V projections of the
positions the rank owns, with the columns it keeps) — what a prefill server would hand over, so
it runs outside any recorded step. Each decode step then calls :meth:`KvCache.append` with the
new token's K and V (computed on every rank of a KV-shard group, redundantly): the rank that owns
the position appends them, the others keep their cache (``k_append`` / ``v_append`` in the Plan).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from helixlib.plan.shards import Shard, flat_columns, head_ranges
from helixlib.runtime.trace import Trace


class KvCache:
    """k [B, L_j, h_kv, d], v [B, L_j, h_kv, d_v] for the global ``positions`` held, in order."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, positions: list[int], next_position: int,
                 owns: Callable[[int], bool]):
        self.k, self.v, self.positions = k, v, list(positions)
        self.next_position, self.owns = next_position, owns

    def append(self, k_new: torch.Tensor, v_new: torch.Tensor, trace: Trace) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new token's k [B, 1, h_kv, d] and v where this rank owns its position;
        return the keys and values to attend to."""
        mine = self.owns(self.next_position)
        with trace.op("k_append"):
            if mine:
                self.k = torch.cat([self.k, k_new], dim=1)
        with trace.op("v_append"):
            if mine:
                self.v = torch.cat([self.v, v_new], dim=1)
        if mine:
            self.positions.append(self.next_position)
        self.next_position += 1
        return self.k, self.v


def load(shard: Shard, weights: dict, prompt: torch.Tensor, positions: list[int], k_width: int,
         owns: Callable[[int], bool]) -> KvCache:
    """The cache of ``shard`` for the prompt's block inputs ``prompt`` [B, S, D]: LN1, then K and V
    at ``positions``. K keeps ``k_width`` columns of each KV head: the shard's segment of d_qk, or
    all of it (``gather_qk`` and KV shards keep whole heads); V the shard's columns of d_v."""
    D = prompt.shape[-1]
    h1 = F.layer_norm(prompt, (D,), weights["ln1.weight"], weights["ln1.bias"])[:, positions]
    lo = 0 if k_width == shard.head_dim else shard.dim_slice[0]
    k_cols = flat_columns(head_ranges(shard.kv_heads, shard.head_dim, (lo, lo + k_width)))
    v_cols = flat_columns(shard.v_ranges)
    B, L = h1.shape[:2]
    h_kv = shard.kv_heads[1] - shard.kv_heads[0]
    k = F.linear(h1, weights["Wk"][:, k_cols].T, weights["bk"][k_cols]).view(B, L, h_kv, -1)
    v = F.linear(h1, weights["Wv"][:, v_cols].T, weights["bv"][v_cols]).view(B, L, h_kv, -1)
    return KvCache(k, v, positions, prompt.shape[1], owns)
