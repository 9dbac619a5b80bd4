"""Plots of a distributed run's monitoring points (a RunResult from helixlib.runtime.run)."""

from __future__ import annotations

import numpy as np

from helixlib.core.palette import rank_colors
from helixlib.plan import Plan
from helixlib.runtime.run import RunResult
from helixlib.runtime.trace import Trace


def op_time_matrix(result: RunResult) -> tuple[list[str], np.ndarray]:
    """(op names, [ranks, ops] forward seconds)."""
    op_s = result.op_seconds()
    names = list(op_s)
    return names, np.array([op_s[n] for n in names]).T


def plot_op_times(result: RunResult, ax=None):
    """Heat map: forward time of every operator on every rank (ms)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    names, m = op_time_matrix(result)
    im = ax.imshow(m * 1e3, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel("rank")
    ax.set_title("forward time per operator (ms)")
    ax.figure.colorbar(im, ax=ax)
    return ax


def collective_bytes(plan: Plan, result: RunResult) -> tuple[list[str], list[int], list[int]]:
    """(labels, bytes the plan predicts, bytes the ranks recorded), per named collective,
    summed over every rank that calls it."""
    labels, planned, recorded = [], [], []
    rec = {(c["phase"], c["name"]): c["bytes"] for c in result.collective_summary()}
    seen = []
    for c in plan.collectives:
        key = (c.phase, c.name)
        if key in seen or (c.phase == "backward" and not result.spec.backward):
            continue
        seen.append(key)
        labels.append(c.name)
        planned.append(sum(x.bytes * len(x.ranks) for x in plan.collectives if (x.phase, x.name) == key))
        recorded.append(rec.get(key, 0))
    return labels, planned, recorded


def plot_collective_bytes(plan: Plan, result: RunResult, ax=None):
    """Bars: bytes per collective, plan vs recorded (they should coincide)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    labels, planned, recorded = collective_bytes(plan, result)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, np.array(planned) / 1e6, 0.4, label="plan")
    ax.bar(x + 0.2, np.array(recorded) / 1e6, 0.4, label="recorded")
    ax.set_xticks(x, labels, rotation=40, ha="right")
    ax.set_ylabel("MB (all ranks)")
    ax.set_title("bytes per collective")
    ax.legend()
    return ax


def plot_memory(result: RunResult, ax=None):
    """Bars: peak memory per rank, coloured like the rank map."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    part = result.spec.partition
    colors = rank_colors(part.head_groups, part.dim_segments)
    ax.bar(range(result.world_size), np.array(result.peak_memory_bytes) / 1e6, color=colors)
    ax.set_xlabel("rank")
    ax.set_ylabel("MB")
    ax.set_title(f"peak memory per rank: {result.memory_kind}")
    return ax


def time_breakdown(result: RunResult) -> dict[str, np.ndarray]:
    """Seconds per rank: forward operators, forward collectives, backward collectives, and the
    rest of backward (autograd's compute), from the recorded trace."""
    parts = {k: [] for k in ("forward ops", "forward collectives", "backward collectives", "backward compute")}
    for t in result.traces:
        fwd_c = sum(c.seconds for c in t.collectives if c.phase == "forward")
        bwd_c = sum(c.seconds for c in t.collectives if c.phase == "backward")
        parts["forward ops"].append(sum(o.seconds for o in t.ops))
        parts["forward collectives"].append(fwd_c)
        parts["backward collectives"].append(bwd_c)
        parts["backward compute"].append(max(0.0, t.timings.get("backward_s", 0.0) - bwd_c))
    return {k: np.array(v) for k, v in parts.items()}


def plot_time_breakdown(result: RunResult, ax=None):
    """Stacked bars per rank: where each rank's step time went."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    bottom = np.zeros(result.world_size)
    for name, secs in time_breakdown(result).items():
        ax.bar(range(result.world_size), secs * 1e3, bottom=bottom * 1e3, label=name)
        bottom += secs
    ax.set_xlabel("rank")
    ax.set_ylabel("ms")
    ax.set_title("step time per rank")
    ax.legend(fontsize=8)
    return ax


# ---- several steps: medians, not one sample ------------------------------------------------


def step_medians(steps: list[list[Trace]]) -> list[dict]:
    """Per operator and per collective (forward and backward): the slowest rank's seconds in each
    step, and their median, min and max over the steps. ``steps[k][r]`` is rank r's trace of step k."""
    def per_step(get) -> np.ndarray:
        return np.array([max(get(t) for t in step) for step in steps])

    rows = []
    first = steps[0][0]
    for name in dict.fromkeys(o.name for o in first.ops):
        s = per_step(lambda t, n=name: sum(o.seconds for o in t.ops if o.name == n))
        rows.append({"name": name, "kind": "compute", "median": float(np.median(s)), "min": float(s.min()),
                     "max": float(s.max())})
    for name in dict.fromkeys(c.name for c in first.collectives):
        s = per_step(lambda t, n=name: sum(c.seconds for c in t.collectives if c.name == n))
        rows.append({"name": name, "kind": "communication", "median": float(np.median(s)), "min": float(s.min()),
                     "max": float(s.max())})
    return rows


def step_totals(steps: list[list[Trace]]) -> np.ndarray:
    """[steps, ranks]: each rank's whole step (forward + backward), seconds."""
    return np.array([[t.timings.get("total_s", 0.0) for t in step] for step in steps])


def plot_step_medians(steps: list[list[Trace]], ax=None):
    """Where a step's time goes: per op and collective, the median over steps of the slowest rank
    (bar) and the range over steps (whisker)."""
    import matplotlib.pyplot as plt

    from helixlib.core.palette import TERM_COLORS

    rows = step_medians(steps)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.22 * len(rows) + 1.2))
    y = np.arange(len(rows))
    med = np.array([r["median"] for r in rows]) * 1e3
    lo, hi = med - np.array([r["min"] for r in rows]) * 1e3, np.array([r["max"] for r in rows]) * 1e3 - med
    ax.barh(y, med, xerr=[lo, hi], color=[TERM_COLORS[r["kind"]] for r in rows], error_kw={"lw": 0.8})
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"ms, slowest rank: median over {len(steps)} steps (whiskers: min and max)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=TERM_COLORS[k]) for k in ("compute", "communication")]
    ax.legend(handles, ["operator", "collective"], fontsize=7, loc="lower right")
    return ax


def plot_step_totals(steps: list[list[Trace]], ax=None):
    """Each step's time on every rank (dots) and the slowest rank's (line): how much one step
    varies on this machine."""
    import matplotlib.pyplot as plt

    tot = step_totals(steps) * 1e3
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.8))
    k = np.arange(1, len(tot) + 1)
    for r in range(tot.shape[1]):
        ax.scatter(k, tot[:, r], s=8, color="gray", alpha=0.5, label="each rank" if r == 0 else None)
    ax.plot(k, tot.max(axis=1), "k-o", label="slowest rank")
    ax.axhline(float(np.median(tot.max(axis=1))), color="tab:red", ls="--", lw=1, label="median of the slowest")
    ax.set_xticks(k)
    ax.set_xlabel("timed step")
    ax.set_ylabel("ms (forward + backward)")
    ax.legend(fontsize=7)
    return ax
