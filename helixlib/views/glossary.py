"""The workbook's vocabulary: each term, what it means here, where it is used, and its primary
source (the paper or the documentation that defined it). Notebook 00 shows it as a definition list."""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    term: str
    meaning: str
    notebooks: str  # where the workbook uses it
    source: str  # primary source: authors, title, venue/arXiv id or URL, year


GLOSSARY: tuple[Term, ...] = (
    Term("multi-head attention", "softmax(Q·Kᵀ/√d)·V per head, H heads of dimension d = D/H side by side.", "01–03",
         "Vaswani et al., “Attention Is All You Need”, NeurIPS 2017, arXiv:1706.03762"),
    Term("head group × dim segment", "the two-level split: n groups of H/n heads, each head's d columns cut into m "
         "segments; rank (g, s) = g·m + s.", "00–07",
         "the deployment plan under audit (data/deployment_plan.md); the mesh is PyTorch's "
         "init_device_mesh, https://pytorch.org/docs/stable/distributed.html"),
    Term("all-reduce, all-gather, reduce-scatter", "collectives: every rank ends with the sum / the concatenation "
         "/ one slice of the sum of every rank's buffer.", "01–05",
         "NCCL User Guide, Collective Operations, "
         "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/usage/collectives.html"),
    Term("Megatron f / g, column / row parallel", "f: identity forward, all-reduce backward (before a column-parallel "
         "matmul); g: all-reduce forward, identity backward (after a row-parallel one).", "02, 03, 05",
         "Shoeybi et al., “Megatron-LM”, arXiv:1909.08053, §3"),
    Term("FLOPs", "floating-point operations, 2 per multiply-add: a [M,K]·[K,N] matmul is 2·M·K·N.", "02, 04",
         "Kaplan et al., “Scaling Laws for Neural Language Models”, arXiv:2001.08361, §2.1"),
    Term("roofline", "an op's time is max(FLOPs / peak FLOP/s, bytes / memory bandwidth): compute- or memory-bound.",
         "04", "Williams, Waterman & Patterson, “Roofline: an insightful visual performance model for multicore "
         "architectures”, Communications of the ACM 52(4), 2009"),
    Term("α–β model", "a message of S bytes takes α + S/β: a fixed latency plus bytes over bandwidth.", "01, 04",
         "Hockney, “The communication challenge for MPP: Intel Paragon and Meiko CS-2”, Parallel Computing 20(3), "
         "1994"),
    Term("bus bandwidth (busbw)", "S·f/t with f = 2(p−1)/p for all-reduce, (p−1)/p for all-gather: comparable "
         "across group sizes and with the link's speed.", "01, 04",
         "NVIDIA nccl-tests, doc/PERFORMANCE.md, https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md"),
    Term("MFU", "model FLOPs utilisation: the model's FLOPs per second over the hardware's peak.", "04, 06",
         "Chowdhery et al., “PaLM”, arXiv:2204.02311, Appendix B"),
    Term("sequence parallelism (SP)", "Megatron's LayerNorms and dropouts split along the sequence; the all-reduces "
         "become all-gather + reduce-scatter.", "06",
         "Korthikanti et al., “Reducing Activation Recomputation in Large Transformer Models”, arXiv:2205.05198"),
    Term("Ulysses", "sequence parallelism whose attention all-to-alls the sequence shards into head shards and back.",
         "06", "Jacobs et al., “DeepSpeed Ulysses”, arXiv:2309.14509"),
    Term("ring attention", "sequence shards pass their K/V blocks round a ring; each rank attends block by block.",
         "06", "Liu, Zaharia & Abbeel, “Ring Attention with Blockwise Transformers”, arXiv:2310.01889"),
    Term("ZeRO", "optimizer states, gradients and (stage 3) weights sharded over the data-parallel ranks and "
         "gathered when needed.", "04, 06",
         "Rajbhandari et al., “ZeRO: Memory Optimizations Toward Training Trillion Parameter Models”, "
         "arXiv:1910.02054"),
    Term("flash attention", "attention in tiles with an online softmax: the L×L scores are never stored.", "04, 06",
         "Dao et al., “FlashAttention”, arXiv:2205.14135; online softmax: Milakov & Gimelshein, arXiv:1805.02867"),
    Term("recompute (activation checkpointing)", "keep only each block's input; recompute its forward during "
         "backward.", "04, 06", "Chen et al., “Training Deep Nets with Sublinear Memory Cost”, arXiv:1604.06174"),
    Term("Adam, 16 bytes per parameter", "bf16 weights and gradients, fp32 master copy and two fp32 moments.", "04",
         "Kingma & Ba, arXiv:1412.6980; mixed precision: Micikevicius et al., arXiv:1710.03740; the count: "
         "ZeRO, arXiv:1910.02054 §3.1"),
    Term("Helix parallelism", "NVIDIA's decoding scheme: KV heads × KV-sequence shards for attention, the same GPUs "
         "re-used tensor-parallel for the FFN.", "00",
         "Bhatia et al., “Helix Parallelism”, arXiv:2507.07120"),
)


def glossary_html(terms: tuple[Term, ...] = GLOSSARY) -> str:
    """The glossary as an HTML definition list: each term, what it means, where used, its source."""
    items = "".join(f"<dt><b>{html.escape(t.term)}</b> <small>(notebooks {html.escape(t.notebooks)})</small></dt>"
                    f"<dd>{html.escape(t.meaning)}<br><small>Source: {html.escape(t.source)}</small></dd>"
                    for t in terms)
    return f"<dl>{items}</dl>"
