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
SWIGLU_WEIGHT_NAMES = ("W3", "b3")  # SwiGLU's up projection (W1 is its gate)


def weight_names(model: ModelConfig) -> tuple[str, ...]:
    """The dense weights of ``model``'s block, in a fixed order."""
    return WEIGHT_NAMES + (SWIGLU_WEIGHT_NAMES if model.mlp == "swiglu" else ())


def init_weights(model: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Dense weights drawn from one seeded generator (in fp64, then cast, so every dtype
    sees the same values). Biases and LayerNorm affines are non-trivial on purpose:
    a bias added twice or a LayerNorm weight dropped shows up in the error. Wq [D, H·d_qk],
    Wk [D, K·d_qk], Wv [D, K·d_v], Wo [H·d_v, D]; SwiGLU's W3 and b3 are drawn last, so the
    other weights of a model are the same with either MLP."""
    D, F_ = model.hidden, model.mlp_hidden
    Q, KQ, KV, HV = (model.heads * model.head_dim_qk, model.kv_heads * model.head_dim_qk,
                    model.kv_heads * model.head_dim_v, model.heads * model.head_dim_v)
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    w = {
        "ln1.weight": 1 + randn(D, scale=0.1), "ln1.bias": randn(D, scale=0.1),
        "Wq": randn(D, Q, scale=D ** -0.5), "bq": randn(Q, scale=0.1),
        "Wk": randn(D, KQ, scale=D ** -0.5), "bk": randn(KQ, scale=0.1),
        "Wv": randn(D, KV, scale=D ** -0.5), "bv": randn(KV, scale=0.1),
        "Wo": randn(HV, D, scale=HV ** -0.5), "bo": randn(D, scale=0.1),
        "ln2.weight": 1 + randn(D, scale=0.1), "ln2.bias": randn(D, scale=0.1),
        "W1": randn(D, F_, scale=D ** -0.5), "b1": randn(F_, scale=0.1),
        "W2": randn(F_, D, scale=F_ ** -0.5), "b2": randn(D, scale=0.1),
    }
    if model.mlp == "swiglu":
        w.update(W3=randn(D, F_, scale=D ** -0.5), b3=randn(F_, scale=0.1))
    return {k: v.to(dtype) for k, v in w.items()}


def init_decode_input(model: ModelConfig, steps: int, seed: int = 0,
                      dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt [B, S, D], new tokens [T, B, 1, D]): the block inputs of the S cached positions and
    of the T decode steps (teacher forcing: given, not fed back), the same on every rank."""
    gen = torch.Generator().manual_seed(seed + 2_000_003)
    B, S, D = model.batch, model.seq_len, model.hidden
    prompt = torch.randn(B, S, D, generator=gen, dtype=torch.float64)
    new = torch.randn(steps, B, 1, D, generator=gen, dtype=torch.float64)
    return prompt.to(dtype), new.to(dtype)


def init_input(model: ModelConfig, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, grad_out), both [B, L, D], identical on every rank that calls this with ``seed``."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    shape = (model.batch, model.seq_len, model.hidden)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    gy = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return x.to(dtype), gy.to(dtype)


def dense_block(x: torch.Tensor, w: dict[str, torch.Tensor], heads: int, causal: bool,
                kv_heads: int | None = None, mlp: str = "gelu") -> torch.Tensor:
    """Pre-LN block on one device. x [B, L, D] -> [B, L, D]. Grouped-query attention when
    ``kv_heads`` < ``heads`` (SDPA's ``enable_gqa``); head dims from the weights' shapes."""
    B, L, D = x.shape
    K = kv_heads or heads

    def proj(t, W, b, h):  # [B, L, D] -> [B, h, L, d]
        return F.linear(t, W.T, b).view(B, L, h, -1).transpose(1, 2)

    h1 = F.layer_norm(x, (D,), w["ln1.weight"], w["ln1.bias"])
    o = F.scaled_dot_product_attention(proj(h1, w["Wq"], w["bq"], heads), proj(h1, w["Wk"], w["bk"], K),
                                       proj(h1, w["Wv"], w["bv"], K), is_causal=causal, enable_gqa=K < heads)
    x1 = x + F.linear(o.transpose(1, 2).reshape(B, L, -1), w["Wo"].T, w["bo"])
    h2 = F.layer_norm(x1, (D,), w["ln2.weight"], w["ln2.bias"])
    u = F.linear(h2, w["W1"].T, w["b1"])
    z = F.silu(u) * F.linear(h2, w["W3"].T, w["b3"]) if mlp == "swiglu" else F.gelu(u)
    return x1 + F.linear(z, w["W2"].T, w["b2"])


def dense_model_block(x: torch.Tensor, w: dict[str, torch.Tensor], model: ModelConfig) -> torch.Tensor:
    """:func:`dense_block` with ``model``'s heads, KV heads, mask and MLP."""
    return dense_block(x, w, model.heads, model.causal, model.kv_heads, model.mlp)
