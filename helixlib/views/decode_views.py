"""Decoding, drawn and printed: the text ``estimate --phase decode`` prints, the three published
rooflines, the Pareto frontier of throughput per GPU against interactivity, and a numeric demo of the
log-sum-exp combine that makes KV shards exact.

Every number comes from ``helixlib.estimate.decode*`` and ``helixlib.estimate.pareto``; these functions
arrange and draw them (tests assert on what the computing functions return).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.core.units import seconds, si, table
from helixlib.estimate.decode_estimate import DecodeEstimate
from helixlib.estimate.decode_roofline import RooflineCurve
from helixlib.plan.names import DecodeStrategy

#: one colour per strategy, shared by the Pareto plot and the explorer
STRATEGY_COLORS = {DecodeStrategy.MEGATRON_TP: "#4c72b0", DecodeStrategy.HELIX: "#dd8452",
                   DecodeStrategy.HELIX_KV: "#55a868"}
BREAKDOWN = ("weight_read_s", "kv_read_s", "compute_s", "launch_s", "communication_s")
BREAKDOWN_COLORS = dict(zip(BREAKDOWN, ("#4c72b0", "#c44e52", "#8172b3", "#8c8c8c", "#dd8452")))


def decode_report(est: DecodeEstimate) -> str:
    """One decode configuration as text: what it is, TTL and throughput, the breakdown, memory per GPU."""
    m, cfg, c = est.model, est.config, est.costs
    d = est.to_dict()
    dt = f"weights {cfg.weight_dtype or m.dtype}, KV {cfg.kv_dtype or m.dtype} ({cfg.kv_layout})"
    lines = [f"{m.name} decode on {est.cluster.name} ({est.cluster.device.name}): {cfg.label()} = {cfg.gpus} GPUs, "
             f"context S = {cfg.context:,}, batch B = {cfg.batch}, {dt}", ""]
    rows = [["token-to-token latency (TTL)", seconds(est.ttl_s) + (" (HOP-B)" if cfg.hop_b else "")],
            ["  without overlap / with HOP-B", f"{seconds(c['ttl_s'])} / {seconds(c['ttl_hop_b_s'])}"],
            ["tokens/s per user (1/TTL)", f"{d['decode']['tokens_per_s_per_user']:.4g}"],
            ["tokens/s per GPU", f"{d['decode']['tokens_per_s_per_gpu']:.4g}"],
            ["largest batch that fits", f"{int(c['max_batch'])}"],
            ["KV copies in a group", f"{c['duplication']:.3g}"]]
    lines += [table(rows, ["decode", "value"]), ""]
    rows = [[k.removesuffix("_s").replace("_", " "), seconds(c[k]), f"{c[k] / c['ttl_s']:.1%}"] for k in BREAKDOWN]
    lines += [table(rows, ["per token (no overlap)", "time", "share"]), ""]
    mem = d["memory"]
    rows = [[k.removesuffix("_bytes").replace("_", " "), si(v, "B")] for k, v in mem.items() if k.endswith("_bytes")]
    lines += [table(rows, ["memory per GPU", "bytes"]),
              f"{'fits' if mem['fits'] else 'does NOT fit'} ({si(mem['total_bytes'], 'B')} of "
              f"{si(mem['capacity_bytes'], 'B')})"]
    return "\n".join(lines)


def plot_rooflines(curves: list[RooflineCurve], axes=None):
    """The three panels (vs TP width, vs S, vs KVP width): KV-read and weight-read time per layer, in µs."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6))
    for ax, cur in zip(np.atleast_1d(axes), curves):
        ax.plot(cur.x, cur.kv_read_s * 1e6, "o-", color=BREAKDOWN_COLORS["kv_read_s"], label="KV cache reads")
        ax.plot(cur.x, cur.weight_read_s * 1e6, "s-", color=BREAKDOWN_COLORS["weight_read_s"], label="weight reads")
        ax.plot(cur.x, (cur.kv_read_s + cur.weight_read_s) * 1e6, "--", color="black", lw=1, label="sum")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(cur.x_label)
        ax.set_ylabel("DRAM read time per layer (µs)")
        ax.set_title(cur.title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return axes


def plot_pareto(points: dict, frontiers: dict, ax=None, title: str = ""):
    """Throughput per GPU against interactivity: every fitting configuration (faint) and each strategy's
    frontier (line). ``points`` / ``frontiers``: strategy -> (tokens/s/user, tokens/s/GPU) arrays."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.6))
    for s, (x, y) in points.items():
        ax.scatter(x, y, s=4, alpha=0.15, color=STRATEGY_COLORS[s])
    for s, (x, y) in frontiers.items():
        order = np.argsort(x)
        ax.plot(np.asarray(x)[order], np.asarray(y)[order], "o-", ms=3, color=STRATEGY_COLORS[s], label=s)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactivity: tokens/s per user (1/TTL)")
    ax.set_ylabel("throughput: tokens/s per GPU")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


@dataclass(frozen=True)
class LseDemo:
    """One decode query against S keys split over p KV shards (blocks of ``block`` tokens, round-robin)."""

    exact: np.ndarray  # [d_v], softmax(q·Kᵀ/√d)·V over all S keys
    combined: np.ndarray  # Σ_i exp(LSE_i − LSE)·O_i
    naive_mean: np.ndarray  # the mean of the shards' outputs (wrong)
    shard_lse: np.ndarray  # [p]
    combined_error: float  # max |combined − exact|
    naive_error: float
    empty_shard_error: float  # the combine with one more, empty shard (LSE = −inf, O = 0): a no-op
    exchanged_elements: int  # what the shards exchange: p·(d_v + 1), whatever S
    partial_score_elements: int  # what a head-dim split all-reduces instead: S


def lse_combine_demo(context: int = 1000, head_dim: int = 16, shards: int = 4, block: int = 32,
                     seed: int = 0) -> LseDemo:
    """Exact attention from partial outputs and log-sum-exp (Flash-Decoding's combine, which Helix runs
    across GPUs: Bhatia et al., arXiv 2507.07120 §2.1.2), in float64 numpy."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(head_dim)
    k, v = rng.standard_normal((context, head_dim)), rng.standard_normal((context, head_dim))
    scores = k @ q / np.sqrt(head_dim)
    p = np.exp(scores - scores.max())
    exact = p @ v / p.sum()
    owner = (np.arange(context) // block) % shards  # round-robin blocks
    outs, lses = [], []
    for i in range(shards):
        s = scores[owner == i]
        if not s.size:  # owns no position yet: a no-op in the combine (TensorRT-LLM writes the same)
            outs.append(np.zeros(head_dim))
            lses.append(-np.inf)
            continue
        m = s.max()
        w = np.exp(s - m)
        outs.append(w @ v[owner == i] / w.sum())
        lses.append(m + np.log(w.sum()))
    outs, lses = np.array(outs), np.array(lses)

    def combine(o, lse):
        top = lse.max()
        total = top + np.log(np.exp(lse - top).sum())
        return (np.exp(lse - total)[:, None] * o).sum(0)

    combined = combine(outs, lses)
    with_empty = combine(np.vstack([outs, np.zeros(head_dim)]), np.append(lses, -np.inf))
    err = lambda x: float(np.abs(x - exact).max())
    return LseDemo(exact, combined, outs.mean(0), lses, err(combined), err(outs.mean(0)), err(with_empty),
                   shards * (head_dim + 1), context)
