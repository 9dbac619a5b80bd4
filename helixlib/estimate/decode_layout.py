"""Where a decode step's weights and KV cache live: per-GPU shapes of one model-parallel group.

A decode step feeds one new token per sequence through the model; its attention reads the KV cache of
S tokens. One model-parallel group of ``W`` GPUs holds one copy of (a pipeline stage of) the model:

``megatron-tp``  split = t = W heads-wise, second = 1;
``helix``        split = n head groups × second = m head-dim segments (n·m = W);
``helix-kv``     split = TP_A head groups × second = KVP shards of the KV sequence (TP_A·KVP = W).

Per GPU (H query heads, K KV heads, head dims d_qk / d_v, hidden D, FFN width F):

* query heads ``h = H/split``; KV heads ``k = ⌈K/split⌉``: beyond split = K every GPU keeps a copy of its
  heads' KV head, so the group stores ``split/K`` copies of the cache (``duplication``); ``helix-kv`` keeps
  TP_A ≤ K (its KV shards are the alternative to duplicating);
* key / value columns per KV head ``d_qk/m`` and ``d_v/m`` under ``helix``, else all of them; the latent
  layout (:class:`~helixlib.plan.names.KvLayout`) stores only the ``d_qk`` key columns (the value is
  their first ``d_v``);
* KV positions ``S`` (``megatron-tp``, ``helix``) or ``⌈S/KVP⌉`` (``helix-kv``: blocks handed out round-robin,
  the busiest shard has the ceiling);
* weights, matrices only (biases and norms are < 0.01 % of them): ``W_Q [D, h·d_qk']``, ``W_K, W_V
  [D, k·d']`` (no ``W_V`` under the latent layout), ``W_O [H·d_v/W, D]`` (row-parallel over the whole
  group: under ``helix-kv`` the All-to-All leaves each GPU ``H/W`` heads of every sequence), and the FFN
  (``gelu`` 2, ``swiglu`` 3 matrices) ``D·F/W`` each. ``helix-kv`` keeps ``W_Q, W_K, W_V`` of its head
  group on every KV shard (Bhatia et al., arXiv 2507.07120 §2.1: the redundant QKV projection).

Every field is a numpy array (one entry per configuration) or a number.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from helixlib.plan.model import ModelConfig
from helixlib.plan.names import DecodeStrategy, KvLayout


class DecodeLayout(NamedTuple):
    """Per-GPU shapes of one layer (see the module docstring); arrays or numbers."""

    valid: object  # bool: the strategy can split this model this way
    width: object  # W, GPUs of the group
    heads: object  # h, query heads per GPU
    kv_heads: object  # k, KV heads per GPU
    qk_cols: object  # key (and query) columns per head on this GPU
    v_cols: object  # value columns per head on this GPU
    positions: object  # KV positions per GPU (the busiest shard)
    kv_elements: object  # cache elements per sequence per layer on this GPU
    duplication: object  # cache copies the group stores (1: none)
    q_params: object  # W_Q on this GPU
    kv_params: object  # W_K (+ W_V)
    o_params: object  # W_O
    ffn_params: object  # all FFN matrices
    o_rows: object  # rows of W_O on this GPU (H·d_v/W)
    ffn_cols: object  # FFN columns on this GPU (F/W)

    @property
    def weight_params(self):
        """Weight matrices of one layer on this GPU."""
        return self.q_params + self.kv_params + self.o_params + self.ffn_params


def ffn_matrices(model: ModelConfig) -> int:
    return 3 if model.mlp == "swiglu" else 2


def decode_layout(model: ModelConfig, strategy: str, split, second, context, kv_layout: str = KvLayout.SEPARATE
                  ) -> DecodeLayout:
    """The per-GPU shapes of ``strategy`` with ``split`` × ``second`` GPUs at a KV context of ``context``."""
    scalar = all(np.ndim(v) == 0 for v in (split, second, context))
    split, second, S = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in (split, second, context)))
    H, K, D, F = model.heads, model.kv_heads, model.hidden, model.mlp_hidden
    dqk, dv = model.head_dim_qk, model.head_dim_v
    W = split * second
    latent = kv_layout == KvLayout.LATENT
    ok = (H % split == 0) & ((K % split == 0) | (split % K == 0)) & (F % W == 0) & ((H * dv) % W == 0)
    ok &= (split >= 1) & (second >= 1) & (S >= 1)
    if latent:
        ok &= np.full(np.shape(W), dv <= dqk)
    h = H // split
    k = -(-K // split)
    if strategy == DecodeStrategy.HELIX:
        ok &= (dqk % second == 0) & (dv % second == 0)
        qk_cols, v_cols, positions = dqk // second, dv // second, S
    elif strategy == DecodeStrategy.HELIX_KV:
        ok &= (second <= S) & (K % split == 0)  # TP_A ≤ K: the KV shards replace duplication
        qk_cols, v_cols, positions = np.full_like(W, dqk), np.full_like(W, dv), -(-S // second)
    elif strategy == DecodeStrategy.MEGATRON_TP:
        ok &= second == 1
        qk_cols, v_cols, positions = np.full_like(W, dqk), np.full_like(W, dv), S
    else:
        raise ValueError(f"unknown decode strategy {strategy!r}")
    cols = qk_cols if latent else qk_cols + v_cols
    o_rows = H * dv // W
    ffn_cols = F // W
    out = DecodeLayout(
        valid=ok, width=W, heads=h, kv_heads=k, qk_cols=qk_cols, v_cols=v_cols, positions=positions,
        kv_elements=positions * k * cols, duplication=split * k / K,
        q_params=D * h * qk_cols, kv_params=D * k * cols, o_params=o_rows * D,
        ffn_params=ffn_matrices(model) * D * ffn_cols, o_rows=o_rows, ffn_cols=ffn_cols)
    if not scalar:
        return DecodeLayout(*(np.broadcast_to(v, W.shape) for v in out))
    return DecodeLayout(*(np.asarray(v).item() for v in out))


def model_kv_elements(model: ModelConfig, context, kv_layout: str = KvLayout.SEPARATE):
    """Cache elements of one sequence in one layer, undivided: ``S·K·(d_qk + d_v)`` (latent: ``S·K·d_qk``)."""
    cols = model.head_dim_qk if kv_layout == KvLayout.LATENT else model.head_dim_qk + model.head_dim_v
    return np.asarray(context, dtype=np.int64) * model.kv_heads * cols
