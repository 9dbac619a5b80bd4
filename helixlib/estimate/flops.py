"""Model FLOPs and hardware FLOPs of a training step, as the papers count them.

**Model FLOPs** (what MFU divides by; PaLM, Chowdhery et al. 2022, arXiv 2204.02311, App. B; Korthikanti
et al. 2022, arXiv 2205.05198, Eq. 7; NVIDIA's NeMo / DGX Cloud recipes): the matmuls of the model,
2 FLOPs per multiply-add, the attention scores and P·V over the full ``s × s`` square (no causal
discount), the logits, and a backward of twice the forward — no recomputation. Per sequence::

    3 · [ L · (2·s·h·(a + 2·k)·d + 4·s²·a·d + 2·s·a·d·h + 2·s·h·F·m) + 2·s·h·V ]

(``a`` query heads, ``k`` K/V heads, ``d`` head dim, ``m`` = 2 for a GELU MLP, 3 for SwiGLU). For a
GPT block (k = a, a·d = h, F = 4h, m = 2) it is Korthikanti's ``72·s·h²·L·(1 + s/(6h) + V/(12·h·L))``.

**Hardware FLOPs**: what the GPUs run: model FLOPs plus the recomputed forward (full: the
blocks again; selective: the attention core's two GEMMs again), with causal skipping counted
when a flash kernel does it.

MFU = model FLOPs / (step time × GPUs × dense peak); HFU likewise with hardware FLOPs.
"""

from __future__ import annotations

from helixlib.plan.model import ModelConfig
from helixlib.plan.names import Recompute


def block_matmul_flops(model: ModelConfig, seq_len: int | None = None) -> dict[str, float]:
    """Forward matmul FLOPs of one block for one sequence: ``linear`` (QKV, out-projection, MLP) and
    ``attention`` (scores and P·V over the full square)."""
    s = model.seq_len if seq_len is None else seq_len
    h, a, k, dq, dv, F = (model.hidden, model.heads, model.kv_heads, model.head_dim_qk, model.head_dim_v,
                          model.mlp_hidden)
    matrices = 3 if model.mlp == "swiglu" else 2
    linear = 2 * s * h * (a * dq + k * dq + k * dv) + 2 * s * a * dv * h + 2 * s * h * F * matrices
    return {"linear": float(linear), "attention": float(2 * s * s * a * dq + 2 * s * s * a * dv)}


def logits_flops(model: ModelConfig, seq_len: int | None = None) -> float:
    s = model.seq_len if seq_len is None else seq_len
    return 0.0 if model.vocab is None else float(2 * s * model.hidden * model.vocab)


def model_flops(model: ModelConfig, sequences: int) -> float:
    """Model FLOPs of a training step over ``sequences`` sequences (see the module docstring)."""
    blk = block_matmul_flops(model)
    return 3.0 * sequences * (model.layers * (blk["linear"] + blk["attention"]) + logits_flops(model))


def hardware_flops(model: ModelConfig, sequences: int, recompute: str = Recompute.NONE,
                   causal_skip: bool = False) -> float:
    """FLOPs the GPUs run: the model's, plus recomputation, less the causal half a flash kernel skips."""
    blk = block_matmul_flops(model)
    attention = blk["attention"] * (0.5 if causal_skip else 1.0)
    per_block = {Recompute.NONE: 3 * (blk["linear"] + attention),
                 Recompute.SELECTIVE: 3 * blk["linear"] + 4 * attention,
                 Recompute.FULL: 4 * (blk["linear"] + attention)}[Recompute(recompute)]
    return float(sequences * (model.layers * per_block + 3 * logits_flops(model)))
