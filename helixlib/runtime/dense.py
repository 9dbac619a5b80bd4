"""The dense single-device reference block and the one weight initialisation every
partitioned run slices from.

Weights are stored ``[in_features, out_features]`` so a layer is ``x @ W + b``. The
reference deliberately uses different kernels from the partitioned block
(``F.scaled_dot_product_attention`` and ``F.linear``, where the block uses explicit
einsums and a softmax on all-reduced partial scores), so it is an independent oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helixlib.plan.model import ModelConfig

TORCH_DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

WEIGHT_NAMES = ("ln1.weight", "ln1.bias", "Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo",
                "ln2.weight", "ln2.bias", "W1", "b1", "W2", "b2")


def init_weights(model: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Dense weights drawn from one seeded generator (in fp64, then cast, so every dtype
    sees the same values). Biases and LayerNorm affines are non-trivial on purpose:
    a bias added twice or a LayerNorm weight dropped shows up in the error."""
    D, F_ = model.hidden, model.mlp_hidden
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    w = {
        "ln1.weight": 1 + randn(D, scale=0.1), "ln1.bias": randn(D, scale=0.1),
        "Wq": randn(D, D, scale=D ** -0.5), "bq": randn(D, scale=0.1),
        "Wk": randn(D, D, scale=D ** -0.5), "bk": randn(D, scale=0.1),
        "Wv": randn(D, D, scale=D ** -0.5), "bv": randn(D, scale=0.1),
        "Wo": randn(D, D, scale=D ** -0.5), "bo": randn(D, scale=0.1),
        "ln2.weight": 1 + randn(D, scale=0.1), "ln2.bias": randn(D, scale=0.1),
        "W1": randn(D, F_, scale=D ** -0.5), "b1": randn(F_, scale=0.1),
        "W2": randn(F_, D, scale=F_ ** -0.5), "b2": randn(D, scale=0.1),
    }
    return {k: v.to(dtype) for k, v in w.items()}


def init_input(model: ModelConfig, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, grad_out), both [B, L, D], identical on every rank that calls this with ``seed``."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    shape = (model.batch, model.seq_len, model.hidden)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    gy = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return x.to(dtype), gy.to(dtype)


def dense_block(x: torch.Tensor, w: dict[str, torch.Tensor], heads: int, causal: bool) -> torch.Tensor:
    """Pre-LN block on one device. x [B, L, D] -> [B, L, D]."""
    B, L, D = x.shape
    d = D // heads

    def proj(t, W, b):  # [B, L, D] -> [B, H, L, d]
        return F.linear(t, W.T, b).view(B, L, heads, d).transpose(1, 2)

    h1 = F.layer_norm(x, (D,), w["ln1.weight"], w["ln1.bias"])
    o = F.scaled_dot_product_attention(proj(h1, w["Wq"], w["bq"]), proj(h1, w["Wk"], w["bk"]),
                                       proj(h1, w["Wv"], w["bv"]), is_causal=causal)
    x1 = x + F.linear(o.transpose(1, 2).reshape(B, L, D), w["Wo"].T, w["bo"])
    h2 = F.layer_norm(x1, (D,), w["ln2.weight"], w["ln2.bias"])
    return x1 + F.linear(F.gelu(F.linear(h2, w["W1"].T, w["b1"])), w["W2"].T, w["b2"])
