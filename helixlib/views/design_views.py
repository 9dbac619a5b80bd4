"""Pictures of the design space for notebook 06: the winner per (sequence length, GPUs) as a
heat-map, ring attention's time taken apart as it grows past one node, and a check of the
estimator's overlap bound over every configuration of a sweep."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.core.palette import TERM_COLORS
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.strategies import Shapes, ring_program
from helixlib.estimate.timing import program_timing
from helixlib.plan.model import load_model
from helixlib.views.formats import duration

#: one colour per strategy family (helix partitions share one: the label names the partition)
FAMILY_COLORS = {"helix": "#4c72b0", "head-parallel": "#64b5cd", "Megatron TP+SP": "#55a868",
                 "Ulysses SP": "#8172b3", "ring attention": "#dd8452"}


def family(label: str) -> str:
    if label.startswith("helix"):
        return "helix"
    return "head-parallel" if label.startswith("head-parallel") else label


def winners(rows: list[dict], hardware: str, training: bool) -> dict[tuple[int, int], dict]:
    """(L, G) -> the fastest configuration that fits (``design_space.best(..., family=False)`` rows)."""
    top: dict[tuple[int, int], dict] = {}
    for r in rows:
        key = (r["seq_len"], r["world_size"])
        if r["hardware"] == hardware and r["training"] == training and (
                key not in top or r["time_dataflow"] < top[key]["time_dataflow"]):
            top[key] = r
    return top


def plot_winners(rows: list[dict], hardware: list[str], training: bool, seq_lens: list[int], world_sizes: list[int]):
    """One heat-map per cluster: rows L, columns G, each cell coloured by the winning family and
    labelled with the winner, its time per step and MFU; blank where nothing fits."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(hardware), figsize=(5.4 * len(hardware), 0.9 * len(seq_lens) + 1.6),
                             squeeze=False)
    for ax, hw in zip(axes[0], hardware):
        top = winners(rows, hw, training)
        img = np.ones((len(seq_lens), len(world_sizes), 3))
        for (i, L), (j, G) in ((a, b) for a in enumerate(seq_lens) for b in enumerate(world_sizes)):
            r = top.get((L, G))
            if r is None:
                ax.text(j, i, "nothing fits", ha="center", va="center", fontsize=7, color="gray")
                continue
            img[i, j] = to_rgb(FAMILY_COLORS[family(r["best"])])
            name = r["best"].replace(" reduce_scores", "\nreduce_scores").replace(" gather_qk", "\ngather_qk")
            ax.text(j, i, f"{name}\n{duration(r['time_dataflow'])}\nMFU {r['mfu']:.0%}", ha="center", va="center",
                    fontsize=6.5, color="white")
        ax.imshow(img, aspect="auto")
        ax.set_xticks(range(len(world_sizes)), [str(G) for G in world_sizes])
        ax.set_yticks(range(len(seq_lens)), [f"L = {L:,}" for L in seq_lens])
        ax.set_xlabel("GPUs")
        ax.set_title(f"{hw}: fastest {'training step' if training else 'forward'} that fits", fontsize=9)
    handles = [Patch(color=c, label=f) for f, c in FAMILY_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


@dataclass(frozen=True)
class RingPoint:
    """Ring attention on G GPUs, one step over the whole batch (all layers), seconds."""

    world_size: int
    nodes: int
    compute: float
    kv_ring: float  # passing the K/V chunks round the ring (G−1 sends per block)
    weights: float  # ZeRO-3 gathers of each layer's weights (and, training, the gradients' scatter)
    exposed: float  # communication on the critical path (dataflow estimate)
    attention: float  # the attention kernel's own time: the only compute the K/V sends may hide behind

    @property
    def dataflow(self) -> float:
        return self.compute + self.exposed

    @property
    def perfect_overlap(self) -> float:
        return max(self.compute, self.kv_ring + self.weights)


def ring_points(model: str, hardware: str, world_sizes: list[int], seq_len: int, micro_batch: int = 1,
                training: bool = False) -> list[RingPoint]:
    """Ring attention's step taken apart per G (the design space's own ring program and timing)."""
    cfg, cl = load_model(model), load_cluster(hardware)
    blocks = cfg.layers * (cfg.batch // micro_batch)
    out = []
    for G in world_sizes:
        prog = ring_program(Shapes(micro_batch, seq_len, cfg.hidden, cfg.heads, cfg.mlp_hidden, G), cl.gpus_per_node,
                            cfg.dtype_bytes)
        t = program_timing(prog, cl, cfg.dtype, training)
        comm = {"kv": 0.0, "weights": 0.0}
        for r in t.comms:
            comm["kv" if r.comm.name.startswith("kv_ring") else "weights"] += float(r.time_s) * blocks
        att = sum(float(r.forward.time_s + r.backward_s) for r in t.ops if r.op.kind == "flash_attention") * blocks
        out.append(RingPoint(G, -(-G // cl.gpus_per_node), float(t.compute_s) * blocks, comm["kv"], comm["weights"],
                             float(t.exposed_s) * blocks, att))
    return out


def plot_ring(points: list[RingPoint], ax=None, title: str = ""):
    """Per G: compute, the K/V ring and the weight gathers (hatched: the part exposed), with the
    dataflow estimate and the perfect-overlap bound marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.9))
    x = np.arange(len(points))
    w = 0.27
    ax.bar(x - w, [p.compute for p in points], w, color=TERM_COLORS["compute"], label="compute")
    ax.bar(x, [p.kv_ring for p in points], w, color=TERM_COLORS["communication"], label="K/V ring sends")
    ax.bar(x + w, [p.weights for p in points], w, color=TERM_COLORS["comm_buffers"], label="ZeRO-3 weight gathers")
    ax.plot(x, [p.dataflow for p in points], "k-o", label="dataflow estimate (step)")
    ax.plot(x, [p.perfect_overlap for p in points], "k--", marker="v", label="perfect overlap (lower bound)")
    ax.set_xticks(x, [f"{p.world_size} GPUs\n{p.nodes} node{'s' * (p.nodes > 1)}" for p in points])
    ax.set_ylabel("seconds per step")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


@dataclass(frozen=True)
class BoundCheck:
    """no_overlap ≥ dataflow ≥ perfect_overlap must hold for every configuration."""

    checked: int
    below_lower_bound: int  # dataflow < perfect overlap
    above_upper_bound: int  # dataflow > no overlap
    strategies: tuple[str, ...]  # the strategies of the rows that break it
    worst_shortfall: float  # max (perfect − dataflow) / perfect
    hidden_over_compute: float  # for the worst row: communication hidden / compute (> 1 is impossible)


def bound_check(table: dict, res: dict, rel: float = 1e-9) -> BoundCheck:
    """The overlap bounds over every valid row of a design-space sweep."""
    ok = res["valid"]
    low = ok & (res["time_dataflow"] < res["time_perfect_overlap"] * (1 - rel))
    high = ok & (res["time_dataflow"] > res["time_no_overlap"] * (1 + rel))
    short = np.where(low, (res["time_perfect_overlap"] - res["time_dataflow"]) / res["time_perfect_overlap"], 0.0)
    i = int(np.argmax(short))
    hidden = (res["communication"][i] - res["exposed"][i]) / res["compute"][i] if low.any() else 0.0
    return BoundCheck(int(ok.sum()), int(low.sum()), int(high.sum()),
                      tuple(sorted({str(s) for s in table["strategy"][low | high]})), float(short.max()), float(hidden))
