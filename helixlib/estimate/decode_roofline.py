"""The Helix authors' DRAM-read rooflines, recomputed: per layer, the time to read one GPU's KV cache and
weight matrices at the device's peak memory bandwidth, communication and compute left out.

Three curves (Bhatia et al., arXiv 2507.07120 Fig. 1 and Appendix A; NVIDIA TensorRT-LLM tech blog 22,
"Roofline Motivation"):

* against the TP width t (``megatron-tp``): the KV reads stop falling at t = K (beyond it every GPU keeps a
  copy of its KV head), the weight reads keep falling as 1/t;
* against the context S at a fixed TP width: the KV reads grow linearly in S, the weights do not;
* against the KVP width (``helix-kv`` with TP_A = K, the FFN over all TP_A·KVP GPUs): the KV reads fall as
  1/KVP; the weight reads approach the floor of W_Q, W_K, W_V, which every KV shard keeps.

Read times are ``bytes / bandwidth`` as in the paper's Appendix A (``KV = B·2·⌈K/TP_A⌉·Hsz·(S/KVP)·bytes /
MemBW``; weights ``(2·H·(Q/TP_A)·Hsz + 2·H·⌈K/TP_A⌉·Hsz + 3·H·F/TP_F)·bytes / MemBW``), from the per-GPU
shapes of :mod:`helixlib.estimate.decode_layout`. Under ``helix-kv`` the layout puts W_O on all N GPUs (the
paper's §2 text); Appendix A's formula keeps it with W_Q at TP_A.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from helixlib.estimate.decode_layout import decode_layout
from helixlib.estimate.hardware import Device, load_device
from helixlib.plan.model import DTYPE_BYTES, ModelConfig, load_model
from helixlib.plan.names import DecodeStrategy, KvLayout

ROOFLINE_MODEL = "helix-roofline-dense"  # the TensorRT-LLM blog's configuration (K = 1, 576/512, FP8)
ROOFLINE_DEVICE = "gb200"
WIDTHS = (1, 2, 4, 8, 16, 32, 64)
CONTEXTS = tuple(2 ** k for k in range(12, 23, 2))  # 4K ... 4M tokens


class RooflineCurve(NamedTuple):
    title: str
    x_label: str
    x: np.ndarray
    kv_read_s: np.ndarray  # per layer, one GPU
    weight_read_s: np.ndarray


def dram_read_times(model: ModelConfig, strategy: str, split, second, context, batch, bandwidth: float,
                    weight_bytes: float, kv_bytes: float, kv_layout: str = KvLayout.SEPARATE):
    """(KV-cache read s, weight read s) of one layer on one GPU; bytes per element may be fractional
    (0.5 for FP4)."""
    lay = decode_layout(model, strategy, split, second, context, kv_layout)
    kv = np.asarray(batch) * lay.kv_elements * kv_bytes / bandwidth
    weights = np.asarray(lay.weight_params) * weight_bytes / bandwidth
    return kv, weights


def published_rooflines(model: ModelConfig | str = ROOFLINE_MODEL, device: Device | str = ROOFLINE_DEVICE,
                        batch: int | None = None, context: int | None = None, fixed_tp: int = 8,
                        widths=WIDTHS, contexts=CONTEXTS, kv_layout: str = KvLayout.LATENT) -> list[RooflineCurve]:
    """The three curves for ``model`` (default: the blog's dense MLA-shaped model, B = 8, S = 2^20, FP8)
    on ``device`` (default GB200, 8 TB/s)."""
    model = load_model(model) if isinstance(model, str) else model
    device = load_device(device) if isinstance(device, str) else device
    B = model.batch if batch is None else batch
    S = model.seq_len if context is None else context
    wb = kb = DTYPE_BYTES[model.dtype]
    bw = device.memory_bandwidth
    widths = np.asarray(widths)
    K = model.kv_heads
    tp = dram_read_times(model, DecodeStrategy.MEGATRON_TP, widths, 1, S, B, bw, wb, kb, kv_layout)
    ctx = dram_read_times(model, DecodeStrategy.MEGATRON_TP, fixed_tp, 1, np.asarray(contexts), B, bw, wb, kb,
                          kv_layout)
    kvp = dram_read_times(model, DecodeStrategy.HELIX_KV, K, widths, S, B, bw, wb, kb, kv_layout)
    where = f"{model.name}, B={B}, {model.dtype}, {device.name} {bw / 1e12:g} TB/s"
    return [
        RooflineCurve(f"vs TP width (S={S:,}); {where}", "TP width (GPUs)", widths, *tp),
        RooflineCurve(f"vs context S at TP={fixed_tp}", "KV length S (tokens)", np.asarray(contexts), *ctx),
        RooflineCurve(f"vs KVP width (helix-kv, TP_A=K={K}, FFN TP=N)", "KVP width (GPUs)", widths, *kvp),
    ]
