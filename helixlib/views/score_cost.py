"""What the exact fix costs: the partial-score all-reduce against the score matmul it follows,
as the estimator prices them, and the rule of thumb that explains the ratio.

Per rank of a group of ``m`` (β bytes per element, ``h_g`` heads, ``d_s`` columns):

* score matmul ``Q_s K_sᵀ``: ``2·B·h_g·L²·d_s`` FLOPs at an achieved rate ``R`` (FLOP/s);
* all-reduce of ``S = B·h_g·L²·β`` bytes: ``α + S·2(m−1)/m / busbw`` (nccl-tests' bus bandwidth).

Every score element costs ``2·d_s`` FLOPs to make and ``2(m−1)/m·β`` bytes of bus traffic to
sum, so (α aside)

    t_allreduce / t_scores = (m−1)/m · β/d_s · R/busbw

``R/busbw`` — FLOPs the device does in the time the group moves one byte — is a property of the
hardware (hundreds on an A100 node, more on an H100: compute grew faster than links); ``β/d_s`` is
the partition's. ``gather_qk`` trades the other way: it all-gathers Q and K (``2·B·L·h_g·d``
elements, about ``L/d`` times less bus traffic) and computes the full scores on every rank of the
group (``m`` times the score FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import Cluster, load_cluster
from helixlib.plan import QK_MODES, CollectiveKind, Comm, MeshDim, Phase, Plan, QkMode, build_plan, bus_factor
from helixlib.plan.partition import Partition


def rule_of_thumb(m: int, dtype_bytes: int, d_s: int, flop_rate: float, bus_bandwidth: float) -> float:
    """(m−1)/m · β/d_s · R/busbw: the all-reduce's time over the score matmul's."""
    return (m - 1) / m * dtype_bytes / d_s * flop_rate / bus_bandwidth


@dataclass(frozen=True)
class ScoreCost:
    """The score all-reduce of one head group against its score matmul (one rank, forward, the
    whole batch), as the estimator prices them on ``hardware``."""

    hardware: str
    m: int
    d_s: int
    dtype_bytes: int
    message_bytes: float  # S = B·h_g·L²·β, the full buffer of one group's all-reduce
    scores_flops: float  # 2·B·h_g·L²·d_s on one rank
    scores_s: float
    allreduce_s: float

    @property
    def ratio(self) -> float:
        return self.allreduce_s / self.scores_s

    @property
    def flop_rate(self) -> float:
        """R: the FLOP/s the estimator lets the score matmul reach."""
        return self.scores_flops / self.scores_s

    @property
    def bus_bandwidth(self) -> float:
        """busbw: S·2(m−1)/m over the all-reduce's time (its α included)."""
        return self.message_bytes * bus_factor(CollectiveKind.ALL_REDUCE, self.m) / self.allreduce_s

    @property
    def rule_of_thumb(self) -> float:
        return rule_of_thumb(self.m, self.dtype_bytes, self.d_s, self.flop_rate, self.bus_bandwidth)


def _forward(rows: list[dict], name: str) -> dict:
    return next(r for r in rows if r["name"] == name and r.get("run", Phase.FORWARD) == Phase.FORWARD)


def score_cost(plan: Plan, cluster: Cluster) -> ScoreCost:
    """The score all-reduce of ``plan`` (reduce_scores, m > 1) against its score matmul on ``cluster``."""
    part = plan.partition
    if part.qk_mode != QkMode.REDUCE_SCORES or part.dim_segments == 1:
        plan = build_plan(plan.model, Partition(part.head_groups, max(part.dim_segments, 2), QkMode.REDUCE_SCORES,
                                                part.output))
    est = estimate(plan, cluster, search_micro_batch=False)
    scores = _forward(est.op_rows(), "scores")
    ar = _forward(est.collective_rows(), Comm.SCORES_ALLREDUCE)
    m = plan.model
    return ScoreCost(cluster.name, plan.partition.dim_segments, m.head_dim // plan.partition.dim_segments,
                     m.dtype_bytes, ar["bytes"], scores["flops"], scores["forward_s"], ar["time_s"])


def score_costs(plan: Plan, hardware: list[str]) -> list[ScoreCost]:
    """:func:`score_cost` on each cluster preset in ``hardware``."""
    return [score_cost(plan, load_cluster(h)) for h in hardware]


@dataclass(frozen=True)
class QkModeCost:
    """One qk mode on one rank, forward: the score matmul and the group's collectives."""

    qk_mode: str
    scores_s: float
    group_s: float  # the dim_segment group's collectives (score all-reduce, or Q and K all-gathers)
    group_bus_bytes: float  # bytes each rank puts on the bus for them: Σ S·f

    @property
    def total_s(self) -> float:
        return self.scores_s + self.group_s


def qk_mode_costs(plan: Plan, cluster: Cluster) -> list[QkModeCost]:
    """reduce_scores against gather_qk for ``plan``'s model and partition on ``cluster``."""
    part, out = plan.partition, []
    for qk in QK_MODES:
        p = build_plan(plan.model, Partition(part.head_groups, part.dim_segments, qk, part.output))
        est = estimate(p, cluster, search_micro_batch=False)
        group = [r for r in est.collective_rows() if r["group"] == MeshDim.DIM_SEGMENT and r["run"] == Phase.FORWARD]
        out.append(QkModeCost(qk, _forward(est.op_rows(), "scores")["forward_s"], sum(r["time_s"] for r in group),
                              sum(r["bytes"] * bus_factor(r["kind"], r["group_size"]) for r in group)))
    return out


def plot_score_costs(costs: list[ScoreCost], ax=None):
    """Bars: all-reduce time over score-matmul time per cluster, with the rule of thumb's terms."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    names = [c.hardware for c in costs]
    ax.barh(names, [c.ratio for c in costs], color="#dd8452")
    for i, c in enumerate(costs):
        ax.text(c.ratio, i, f"  x{c.ratio:.1f}  (R = {c.flop_rate / 1e12:.0f} TFLOP/s, busbw = "
                            f"{c.bus_bandwidth / 1e9:.0f} GB/s)", va="center", fontsize=8)
    ax.set_xlim(0, 1.9 * max(c.ratio for c in costs))
    ax.invert_yaxis()
    ax.set_xlabel("score all-reduce time / score matmul time")
    return ax


def plot_qk_modes(costs: list[QkModeCost], ax=None):
    """Stacked bars per qk mode: the score matmul and the group's communication (seconds)."""
    import matplotlib.pyplot as plt

    from helixlib.core.palette import TERM_COLORS

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.2))
    names = [c.qk_mode for c in costs]
    ax.barh(names, [c.scores_s for c in costs], color=TERM_COLORS["compute"], label="score matmul")
    ax.barh(names, [c.group_s for c in costs], left=[c.scores_s for c in costs], color=TERM_COLORS["communication"],
            label="group communication")
    for i, c in enumerate(costs):
        ax.text(c.total_s, i, f"  {c.total_s:.3g} s", va="center", fontsize=8)
    ax.set_xlim(0, 1.25 * max(c.total_s for c in costs))
    ax.invert_yaxis()
    ax.set_xlabel("seconds per layer, one rank, forward (whole batch)")
    ax.legend(fontsize=8, loc="lower right")
    return ax
