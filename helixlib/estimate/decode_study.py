"""The Helix paper's decode study, recomputed: the two models at a 1M-token KV cache on up to 64 GPUs of a
GB200 NVL72, every strategy × partition × pipeline stages × replicas × batch, the frontiers, and the
comparisons of helix-kv with the baselines beside the published figures.

Published (Bhatia et al., arXiv 2507.07120 v1, §3.2-3.3; normalised figures, no absolute times; FP4):
DeepSeek-R1 up to 1.5x lower TTL at fixed batch and up to 32x more concurrent users (= tokens/s per GPU) at
the same TTL; Llama-405B 1.13x higher maximum interactivity and 4x throughput and batch capacity against TP;
HOP-B off costs up to 12 % tokens/s per user on Llama-405B, ~1 % on DeepSeek-R1.
"""

from __future__ import annotations

import numpy as np

from helixlib.estimate.decode import attention_comm_bytes, decode_costs
from helixlib.estimate.decode_layout import decode_layout
from helixlib.estimate.decode_space import GPU_COUNTS, decode_grid, evaluate_decode
from helixlib.estimate.hardware import Cluster, load_cluster
from helixlib.estimate.pareto import Comparison, compare, frontiers
from helixlib.plan.model import load_model
from helixlib.plan.names import DecodeStrategy, KvLayout

STUDY_CLUSTER = "gb200-nvl72"
STUDY_CONTEXT = 2 ** 20
#: preset -> cache layout; the paper's two models as the workbook can express them
STUDY_MODELS = {"helix-paper-llama-405b": KvLayout.SEPARATE, "helix-paper-mla-dense": KvLayout.LATENT}

#: the published ratios (None: not reported); "paper_model" is what the paper ran
PAPER_CLAIMS = {
    "helix-paper-llama-405b": {"paper_model": "Llama-405B", "ttl_ratio_fixed_batch": None,
                               "max_interactivity_ratio": 1.13, "batch_ratio_fixed_ttl": 4.0,
                               "throughput_ratio_fixed_ttl": 4.0, "hop_b_gain": 0.12},
    "helix-paper-mla-dense": {"paper_model": "DeepSeek-R1", "ttl_ratio_fixed_batch": 1.5,
                              "max_interactivity_ratio": None, "batch_ratio_fixed_ttl": 32.0,
                              "throughput_ratio_fixed_ttl": 32.0, "hop_b_gain": 0.01},
}
QUANTITIES = {
    "ttl_ratio_fixed_batch": "TTL at fixed batch (best baseline / helix-kv, largest)",
    "max_interactivity_ratio": "maximum interactivity (lowest TTL, baseline / helix-kv)",
    "batch_ratio_fixed_ttl": "batch at fixed TTL (helix-kv / best baseline, largest)",
    "throughput_ratio_fixed_ttl": "tokens/s per GPU at fixed TTL (helix-kv / best baseline, largest)",
    "hop_b_gain": "HOP-B: tokens/s per user gained by overlapping (largest, fitting helix-kv)",
}


def hop_b_gain(table: dict, res: dict, strategy: str = DecodeStrategy.HELIX_KV) -> float:
    """Largest ``ttl_no_overlap / ttl_hop_b − 1`` over the fitting configurations of ``strategy``."""
    sel = res["fits"] & (table["strategy"] == strategy)
    return float(np.max(res["ttl_s"][sel] / res["ttl_hop_b_s"][sel]) - 1) if sel.any() else float("nan")


def paper_study(cluster: Cluster | str = STUDY_CLUSTER, context: int = STUDY_CONTEXT, gpus=GPU_COUNTS,
                hop_b: bool = True, models: dict | None = None) -> dict:
    """model preset -> {table, results, frontiers, vs_all, vs_tp, vs_head_dim, hop_b_gain, claims}."""
    cluster = load_cluster(cluster) if isinstance(cluster, str) else cluster
    out = {}
    for name, layout in (models or STUDY_MODELS).items():
        model = load_model(name)
        t = decode_grid(gpus=gpus, contexts=(context,))
        r = evaluate_decode(t, model, cluster, kv_layout=layout)
        out[name] = {
            "model": model, "layout": layout, "table": t, "results": r, "frontiers": frontiers(t, r, hop_b),
            "vs_all": compare(t, r, hop_b=hop_b),
            "vs_tp": compare(t, r, baselines=(DecodeStrategy.MEGATRON_TP,), hop_b=hop_b),
            "vs_head_dim": compare(t, r, baselines=(DecodeStrategy.HELIX,), hop_b=hop_b),
            "hop_b_gain": hop_b_gain(t, r), "claims": PAPER_CLAIMS.get(name, {}),
        }
    return out


def claim_rows(study: dict) -> list[list]:
    """[model, quantity, paper, ours vs all baselines, ours vs TP, ours vs the head-dim split] per quantity."""
    fmt = lambda v: "-" if v is None or not np.isfinite(v) else (f"{v:.1%}" if v < 0.5 else f"{v:.3g}x")
    rows = []
    for name, s in study.items():
        for q, text in QUANTITIES.items():
            ours = [s["hop_b_gain"] if q == "hop_b_gain" else getattr(s[k], q)
                    for k in ("vs_all", "vs_tp", "vs_head_dim")]
            rows.append([f"{name} ({s['claims'].get('paper_model', '-')})", text, fmt(s["claims"].get(q)),
                         *map(fmt, ours)])
    return rows


CLAIM_HEADER = ["model (paper's)", "quantity", "paper", "ours: all baselines", "ours: vs TP", "ours: vs head-dim"]


def where(c: Comparison) -> dict:
    """The configurations behind a comparison's numbers (labels) and the batch / TTL they are read at."""
    return {"at_batch": c.at_batch, "at_ttl_s": c.at_ttl_s, **c.best}


def exercise_answers(model: str = "helix-paper-llama-405b", cluster: str = STUDY_CLUSTER,
                     context: int = STUDY_CONTEXT, batch: int = 8) -> dict:
    """The answers notebook 08's exercises hide (tests assert them):

    1. plain TP over 64 GPUs: the copies of the KV cache the group keeps, and one sequence's cache per GPU;
    2. at ``context`` and ``batch``, the bytes helix 8 x 8 all-reduces per layer (partial scores) and the
       bytes helix-kv 8 x 8 sends per layer (partial outputs + log-sum-exp), and their ratio;
    3. helix-kv TP_A 8 x KVP 8: the largest batch that fits at ``context``, and its TTL there (no HOP-B)."""
    m, c = load_model(model), load_cluster(cluster)
    tp = decode_costs(m, c, DecodeStrategy.MEGATRON_TP, 64, 1, context, 1)
    hd = attention_comm_bytes(DecodeStrategy.HELIX, decode_layout(m, DecodeStrategy.HELIX, 8, 8, context), batch)
    a2a = attention_comm_bytes(DecodeStrategy.HELIX_KV, decode_layout(m, DecodeStrategy.HELIX_KV, 8, 8, context),
                               batch)
    kv = decode_costs(m, c, DecodeStrategy.HELIX_KV, 8, 8, context, 1)
    top = int(kv["max_batch"][0])
    at_top = decode_costs(m, c, DecodeStrategy.HELIX_KV, 8, 8, context, top)
    return {"tp64_kv_copies": float(tp["duplication"][0]),
            "tp64_kv_bytes_per_sequence": float(tp["kv_cache_bytes"][0]),
            "head_dim_scores_bytes": float(hd), "helix_kv_all_to_all_bytes": float(a2a),
            "bytes_ratio": float(hd / a2a),
            "helix_kv_8x8_max_batch": top, "helix_kv_8x8_ttl_at_max_batch_s": float(at_top["ttl_s"][0])}
