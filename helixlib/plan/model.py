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

#: bytes per element for the dtypes the workbook knows
DTYPE_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}

_INT_FIELDS = ("hidden", "heads", "mlp_hidden", "seq_len", "batch", "layers")


@dataclass(frozen=True)
class ModelConfig:
    """One pre-LN transformer block repeated ``layers`` times (MHA + 2-matrix GELU MLP, with biases)."""

    name: str
    hidden: int  # D
    heads: int  # H
    mlp_hidden: int  # F
    seq_len: int  # L
    batch: int  # B
    layers: int
    dtype: str = "bf16"
    causal: bool = True
    source: str = ""

    def __post_init__(self):
        for f in _INT_FIELDS:
            object.__setattr__(self, f, positive_int(f, getattr(self, f)))
        one_of("dtype", self.dtype, tuple(DTYPE_BYTES))
        if not isinstance(self.causal, bool):
            raise HelixInputError("causal", "must be true or false", self.causal)
        if self.hidden % self.heads:
            raise HelixInputError("heads", f"must divide hidden ({self.hidden})", self.heads)

    @property
    def head_dim(self) -> int:
        """d = D / H."""
        return self.hidden // self.heads

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def params_per_block(self) -> int:
        """Wq,Wk,Wv,Wo (4D² + 4D) + W1,W2 (2DF + F + D) + two LayerNorms (4D)."""
        D, F = self.hidden, self.mlp_hidden
        return 4 * D * D + 4 * D + 2 * D * F + F + D + 4 * D

    @property
    def params(self) -> int:
        """Parameters of all blocks (embeddings are not part of this model)."""
        return self.layers * self.params_per_block

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

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
