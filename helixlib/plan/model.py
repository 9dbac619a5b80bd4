"""Model configuration and the presets under ``data/models/``.

Notation: batch ``B``, sequence ``L``, hidden ``D``, heads ``H``,
head dim ``d = D/H``, MLP width ``F``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from helixlib.core import presets
from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.core.presets import MODELS_DIR

#: bytes per element for the dtypes the workbook knows (fp8, e4m3 or e5m2: the estimator's weights
#: and KV cache only; the torch runtime refuses it)
DTYPE_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
#: the dtypes the torch runtime (``run``, ``calibrate``) computes in
RUNTIME_DTYPES = ("fp64", "fp32", "bf16", "fp16")
MLP_KINDS = ("gelu", "swiglu")  # 2 matrices (W1, W2) or 3 (gate W1, up W3, down W2)

_INT_FIELDS = ("hidden", "heads", "mlp_hidden", "seq_len", "batch", "layers")
_OPTIONAL_INT_FIELDS = ("kv_heads", "head_dim_qk", "head_dim_v", "vocab")
#: largest size field (a 32-bit index), and largest tensor of one block, in bytes: every count of
#: elements, bytes and FLOPs then fits the 64-bit integers of the estimator's arrays
MAX_FIELD = 2**31 - 1
MAX_TENSOR_BYTES = 2**62


@dataclass(frozen=True)
class ModelConfig:
    """One pre-LN transformer block repeated ``layers`` times: attention (multi-head, or
    grouped-query with ``kv_heads`` < ``heads``; head dims that may differ from D/H, as in
    MLA's absorbed decode) and an MLP (GELU, 2 matrices, or SwiGLU, 3), with biases.
    ``vocab`` (optional) adds the embedding and logits; ``dropout`` the attention and residual
    dropout of training (Vaswani et al. 2017)."""

    name: str
    hidden: int  # D
    heads: int  # H, query heads
    mlp_hidden: int  # F
    seq_len: int  # L (prefill/training) or the KV-cache context S (decode)
    batch: int  # B
    layers: int
    dtype: str = "bf16"
    causal: bool = True
    source: str = ""
    kv_heads: int | None = None  # K (grouped-query attention); None: K = H
    head_dim_qk: int | None = None  # query/key head dim; None: D/H
    head_dim_v: int | None = None  # value head dim; None: D/H
    mlp: str = "gelu"
    vocab: int | None = None  # None: embeddings and logits are not part of the model
    dropout: float = 0.0  # probability, attention and residual dropout when training

    def __post_init__(self):
        for f in _INT_FIELDS + _OPTIONAL_INT_FIELDS:
            if f in _INT_FIELDS or getattr(self, f) is not None:
                object.__setattr__(self, f, positive_int(f, getattr(self, f)))
                if getattr(self, f) > MAX_FIELD:
                    raise HelixInputError(f, f"must be at most {MAX_FIELD} (2^31 - 1)", getattr(self, f))
        one_of("dtype", self.dtype, tuple(DTYPE_BYTES))
        one_of("mlp", self.mlp, MLP_KINDS)
        if not isinstance(self.causal, bool):
            raise HelixInputError("causal", "must be true or false", self.causal)
        if (self.head_dim_qk is None or self.head_dim_v is None) and self.hidden % self.heads:
            raise HelixInputError("heads", f"must divide hidden ({self.hidden}) unless both head dims are given",
                                  self.heads)
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.heads % self.kv_heads:
            raise HelixInputError("kv_heads", f"must divide heads ({self.heads})", self.kv_heads)
        for f in ("head_dim_qk", "head_dim_v"):
            if getattr(self, f) is None:
                object.__setattr__(self, f, self.hidden // self.heads)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise HelixInputError("dropout", "must be a probability in [0, 1)", self.dropout)
        if self.largest_tensor_bytes >= MAX_TENSOR_BYTES:
            raise HelixInputError("model", f"one block's largest tensor would take {self.largest_tensor_bytes:.3g} "
                                           "bytes; the workbook counts up to 2^62 (4.6e18): reduce seq_len or batch")

    @property
    def largest_tensor_bytes(self) -> int:
        """Bytes of one block's largest tensor: the attention scores [B, H, L, L], an activation
        [B, L, max(D, F, H·d)] or a weight [D, max(F, H·d)]."""
        B, L, H = self.batch, self.seq_len, self.heads
        wide = max(self.hidden, self.mlp_hidden, H * max(self.head_dim_qk, self.head_dim_v))
        return max(B * H * L * L, B * L * wide, self.hidden * wide) * self.dtype_bytes

    @property
    def head_dim(self) -> int:
        """d, the query/key head dim (D / H unless the preset says otherwise)."""
        return self.head_dim_qk

    @property
    def grouped(self) -> bool:
        """Grouped-query attention: fewer key/value heads than query heads."""
        return self.kv_heads < self.heads

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def attention_params(self) -> int:
        """Wq [D, H·d_qk], Wk [D, K·d_qk], Wv [D, K·d_v], Wo [H·d_v, D] and their biases."""
        D, H, K, dq, dv = self.hidden, self.heads, self.kv_heads, self.head_dim_qk, self.head_dim_v
        return D * (H * dq + K * dq + K * dv) + H * dv * D + (H * dq + K * dq + K * dv) + D

    @property
    def mlp_params(self) -> int:
        """GELU: W1 [D, F], W2 [F, D] + biases; SwiGLU: gate and up [D, F] each, down [F, D] + biases."""
        D, F = self.hidden, self.mlp_hidden
        matrices = 3 if self.mlp == "swiglu" else 2
        return matrices * D * F + (matrices - 1) * F + D

    @property
    def params_per_block(self) -> int:
        """Attention + MLP + two LayerNorms (4D); for MHA with d = D/H and GELU this is
        Wq,Wk,Wv,Wo (4D² + 4D) + W1,W2 (2DF + F + D) + 4D."""
        return self.attention_params + self.mlp_params + 4 * self.hidden

    @property
    def embedding_params(self) -> int:
        """Token embedding [V, D] and an untied logits projection [D, V] (0 without ``vocab``)."""
        return 0 if self.vocab is None else 2 * self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Parameters of all blocks (embeddings are not part of this model)."""
        return self.layers * self.params_per_block

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again). Changing ``hidden`` or ``heads``
        re-derives the head dims and the KV heads that were derived (D/H, K = H)."""
        if "hidden" in changes or "heads" in changes:
            for f in ("head_dim_qk", "head_dim_v"):
                if f not in changes and getattr(self, f) == self.hidden // self.heads:
                    changes[f] = None
            if "kv_heads" not in changes and self.kv_heads == self.heads:
                changes["kv_heads"] = None
        return dataclasses.replace(self, **changes)

    def require_standard_attention(self, what: str) -> None:
        """Raise unless this is multi-head attention with d = D/H and a GELU MLP (what ``what``
        models so far)."""
        d = self.hidden // self.heads if self.hidden % self.heads == 0 else None
        if self.grouped:
            raise HelixInputError("kv_heads", f"{what} does not model grouped-query attention yet (K < H)",
                                  self.kv_heads)
        if self.head_dim_qk != d or self.head_dim_v != d:
            raise HelixInputError("head_dim_qk", f"{what} needs head dims of D/H", (self.head_dim_qk, self.head_dim_v))
        if self.mlp != "gelu":
            raise HelixInputError("mlp", f"{what} models the GELU MLP only", self.mlp)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def layers_for_params(total_params: float, hidden: int, mlp_hidden: int) -> int:
    """The whole number of blocks whose parameters come closest to ``total_params``.

    Used to derive helix-70b's depth: the plan states "~70B" but no layer count.
    """
    per_block = ModelConfig("probe", hidden, 1, mlp_hidden, 1, 1, 1).params_per_block
    return max(1, round(total_params / per_block))


def preset_names() -> list[str]:
    """Names of the model presets shipped in ``data/models``."""
    return presets.preset_names(MODELS_DIR)


def load_model(name_or_path: str | Path, **overrides) -> ModelConfig:
    """Load a preset by name (``helix-70b``) or a YAML file path; ``overrides`` replace fields."""
    path = presets.resolve_preset("model", name_or_path, MODELS_DIR)
    raw = presets.read_yaml("model", path)
    if not isinstance(raw, dict):
        raise HelixInputError("model", "preset file must hold a mapping of fields", str(path))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise HelixInputError(unknown[0], f"is not a model field (known: {', '.join(sorted(known))})")
    missing = sorted(f for f in _INT_FIELDS + ("name",) if f not in raw)
    if missing:
        raise HelixInputError(missing[0], "is required in a model preset")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**raw)
