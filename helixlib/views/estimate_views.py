"""Tables and plots of estimates for the notebooks (04, 06): the corrections waterfall,
speedup against one GPU, memory scenarios against capacity, the per-op time breakdown.

Every number here comes from ``helixlib.estimate.estimator`` / ``helixlib.estimate.seed_script``; these
functions only arrange them (and tests assert on what they return).
"""

from __future__ import annotations

import dataclasses

from helixlib.core.palette import TERM_COLORS
from helixlib.core.units import seconds
from helixlib.estimate.estimator import Estimate, estimate
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.estimate.seed_script import Correction
from helixlib.plan import QK_MODES, Plan, QkMode, build_plan
from helixlib.plan.partition import Partition, valid_partitions

CORRECTION_HEADER = ["step", "total", "x previous", "what changed"]


def correction_rows(steps: list[Correction]) -> list[list]:
    rows, prev = [], None
    for s in steps:
        rows.append([s.name, seconds(s.total), "" if prev is None else f"x{s.total / prev:.3g}", s.explanation])
        prev = s.total
    return rows


def plot_corrections(steps: list[Correction], ax=None):
    """Each step's total, stacked by kind of term: matmuls, element-wise ops, communication."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.8))
    comm = lambda k: "allreduce" in k or "allgather" in k
    elementwise = {"ln1", "ln2", "softmax", "gelu", "residual1", "residual2"}
    kinds = {"matmuls": lambda k: not comm(k) and k not in elementwise,
             "memory-bound ops": lambda k: k in elementwise, "communication": comm}
    colors = {"matmuls": TERM_COLORS["compute"], "memory-bound ops": TERM_COLORS["activations"],
              "communication": TERM_COLORS["communication"]}
    for i, s in enumerate(steps):
        left = 0.0
        for kind, member in kinds.items():
            v = sum(t for k, t in s.terms.items() if member(k))
            ax.barh(i, v, left=left, color=colors[kind], label=kind if i == 0 else None)
            left += v
        ax.text(left + 0.01 * steps[-1].total, i, seconds(s.total), va="center", fontsize=8)
    ax.set_yticks(range(len(steps)), [s.name for s in steps], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * max(s.total for s in steps))
    ax.set_xlabel("seconds, one block over the whole batch")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


SPEEDUP_HEADER = ["partition", "qk mode", "1 GPU", "G GPUs, compute only", "G GPUs (dataflow)", "speedup, compute",
                  "speedup", "efficiency"]


def speedup_rows(model, cluster: Cluster, world_size: int, qk_modes=QK_MODES,
                 **opts) -> list[dict]:
    """Time of one block (whole batch) on one GPU against G GPUs, for every factorisation the model
    admits (time only: one GPU could not hold the batch)."""
    one = estimate(build_plan(model, Partition(1, 1)), cluster, search_micro_batch=False, **opts)
    t1 = float(one.per_layer["time_dataflow"])
    rows = []
    for qk in qk_modes:
        for part in valid_partitions(model, world_size, qk_mode=qk):
            if qk == QkMode.GATHER_QK and part.dim_segments == 1:
                continue
            e = estimate(build_plan(model, part), cluster, search_micro_batch=False, **opts)
            tg, tc = float(e.per_layer["time_dataflow"]), float(e.per_layer["compute"])
            rows.append({"partition": f"{part.head_groups}x{part.dim_segments}", "qk_mode": qk, "one_gpu_s": t1,
                         "compute_s": tc, "time_s": tg, "speedup_compute": t1 / tc, "speedup": t1 / tg,
                         "efficiency": t1 / tg / world_size})
    return rows


def speedup_table(rows: list[dict]) -> list[list]:
    return [[r["partition"], r["qk_mode"], seconds(r["one_gpu_s"]), seconds(r["compute_s"]), seconds(r["time_s"]),
             f"{r['speedup_compute']:.1f}x", f"{r['speedup']:.1f}x", f"{r['efficiency']:.0%}"] for r in rows]


def memory_scenarios(plan: Plan, cluster: Cluster, scenarios: dict[str, dict]) -> dict[str, Estimate]:
    """One estimate per named scenario (keyword arguments of ``estimate``)."""
    return {name: estimate(plan, cluster, **kw) for name, kw in scenarios.items()}


MEMORY_HEADER = ["scenario", "micro-batch", *MemoryBreakdown.TERMS, "total", "fits", "largest micro-batch"]


def memory_rows(ests: dict[str, Estimate]) -> list[list]:
    gb = lambda v: f"{float(v) / 1e9:.1f} GB"
    return [[name, e.micro_batch, *(gb(getattr(e.memory, t)) for t in MemoryBreakdown.TERMS), gb(e.memory.total),
             "yes" if e.memory.fits else "no", e.largest_micro_batch or "none"] for name, e in ests.items()]


def plot_memory(ests: dict[str, Estimate], ax=None, clip: float = 2.0):
    """Stacked memory terms per scenario against the device's capacity; bars longer than
    ``clip`` × capacity are cut there and labelled with their total."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.45 * len(ests) + 1))
    cap = next(iter(ests.values())).memory.capacity / 1e9
    for i, e in enumerate(ests.values()):
        left = 0.0
        for term in MemoryBreakdown.TERMS:
            v = float(getattr(e.memory, term)) / 1e9
            ax.barh(i, v, left=left, color=TERM_COLORS[term], label=term if i == 0 else None)
            left += v
        ax.text(min(left, clip * cap) + 0.01 * cap, i, f"{left:,.0f} GB", va="center", fontsize=8)
    ax.axvline(cap, color="black", ls="--", lw=1, label=f"capacity {cap:.0f} GB")
    ax.set_xlim(0, clip * cap * 1.12)
    ax.set_yticks(range(len(ests)), list(ests), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GB per GPU")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_breakdown(est: Estimate, ax=None):
    """Seconds per layer per op (compute) and per collective (exposed communication)."""
    import matplotlib.pyplot as plt

    rows = est.breakdown()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1))
    y = range(len(rows))
    ax.barh(y, [r[1] for r in rows], color=TERM_COLORS["compute"], label="compute")
    ax.barh(y, [r[2] for r in rows], color=TERM_COLORS["communication"], label="exposed communication")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per layer (whole batch)")
    ax.legend(fontsize=8)
    return ax


REPLICATION_HEADER = ["tensor", "bytes on 1 GPU", "bytes per GPU", "reduction", "why"]


def replication_rows(plan: Plan, cluster: Cluster, micro_batch: int = 1) -> list[list]:
    """Per-GPU bytes of a few tensors against one GPU holding the whole block: the plan claims 16x."""
    from helixlib.estimate.workload import program_from_plan

    small = plan.model.replace(batch=micro_batch)
    one = program_from_plan(build_plan(small, Partition(1, 1)), 0, cluster)
    many = program_from_plan(build_plan(small, plan.partition), 0, cluster)
    n = plan.partition.head_groups
    why = {"x": "block input: replicated", "h1": "LayerNorm output: replicated", "q": "Q slice: split G ways",
           "p": f"probabilities [b, H/n, L, L]: split n = {n} ways", "u": "FC1 output: split G ways"}
    rows = [[t, f"{one.sizes[t] / 1e6:,.0f} MB", f"{many.sizes[t] / 1e6:,.0f} MB",
             f"{one.sizes[t] / many.sizes[t]:.0f}x", w] for t, w in why.items()]
    rows.append(["weights", f"{one.weight_params * 2 / 1e6:,.0f} MB", f"{many.weight_params * 2 / 1e6:,.0f} MB",
                 f"{one.weight_params / many.weight_params:.1f}x", "split, but LayerNorms and biases replicated"])
    return rows


def placement(plan: Plan, cluster: Cluster, gpus_per_node: tuple[int, ...] = (8, 4, 2)) -> list[list]:
    """The score all-reduce (or Q/K gathers) and the world all-reduces as nodes shrink."""
    rows = []
    for gpn in gpus_per_node:
        e = estimate(plan, dataclasses.replace(cluster, gpus_per_node=gpn), search_micro_batch=False)
        for r in e.collective_rows():
            rows.append([gpn, r["name"], f"{r['group_size']} ranks on {r['nodes']} node(s)", seconds(r["time_s"])])
        rows.append([gpn, "one layer (dataflow)", "", seconds(float(e.per_layer["time_dataflow"]))])
    return rows


def plot_strategies(rows: list[dict], ax=None, x: str = "world_size", key: str = "time_dataflow", title: str = ""):
    """One line per strategy (``design_space.best`` rows): ``key`` against ``x``, log scale."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for strategy in sorted({r["strategy"] for r in rows}):
        pts = sorted((r[x], r[key]) for r in rows if r["strategy"] == strategy)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=strategy)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    xs = sorted({r[x] for r in rows})
    ax.set_xticks(xs, [str(v) for v in xs])
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("seconds per step" if key.startswith("time") else key)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


#: published all-reduce bus bandwidths the collective model was NOT built from (single points in NCCL issues),
#: to hold it against: (cluster, group size, bytes, B/s, source)
MEASURED_BUSBW = [
    ("dgx-a100", 8, 1e9, 200e9, "~200 GB/s, 8 x A100 80GB (HPE Apollo 6500), NCCL 2.18.1: nccl-tests issue #149"),
    ("dgx-h100", 8, 8e9, 480e9, "NVLS peak ~480 GB/s on 8 x H100 (NCCL maintainer): NVIDIA/nccl-tests issue #212"),
    ("dgx-h100", 8, 16e9, 482.12e9, "482.12 GB/s, 8 x H100 (Dell XE9680), NCCL 2.26.2: NVIDIA/nccl-tests issue #309"),
    ("dgx-h200", 8, 4e9, 475e9, "~475 GB/s peak, 8 x H200, NCCL 2.20.3: NVIDIA/nccl-tests issue #272"),
]
BUSBW_HEADER = ["cluster", "ranks", "message", "measured", "model", "model / measured", "source"]


def busbw_rows() -> list[list]:
    """The model's all-reduce bus bandwidth next to the measured anchors."""
    from helixlib.core.units import si
    from helixlib.estimate.alphabeta import bus_bandwidth
    from helixlib.estimate.hardware import load_cluster

    rows = []
    for name, p, size, measured, source in MEASURED_BUSBW:
        model = float(bus_bandwidth(load_cluster(name), "all_reduce", size, p, 1))
        rows.append([name, p, si(size, "B"), si(measured, "B/s"), si(model, "B/s"), f"{model / measured:.2f}", source])
    return rows


def plot_busbw(cluster: Cluster, p: int = 8, ax=None):
    """Predicted all-reduce bus bandwidth against message size inside one node, the published sweeps it
    interpolates, and the published points it was not built from (``MEASURED_BUSBW``)."""
    from helixlib.views.estimate_step_views import plot_collective

    ax = plot_collective(cluster, "all_reduce", p, 1, ax)
    anchors = [(size, busbw) for name, q, size, busbw, _ in MEASURED_BUSBW if name == cluster.name and q == p]
    if anchors:
        ax.plot(*zip(*((size, busbw / 1e9) for size, busbw in anchors)), "k*", ms=8, label="single published points")
        ax.legend(fontsize=6)
    return ax
