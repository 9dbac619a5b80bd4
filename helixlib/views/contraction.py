"""The central argument of notebook 01, on numbers small enough to check by hand.

One head, ``L = 3`` tokens, head dimension ``d = 4`` split into ``m = 2`` segments of
``d_s = 2`` columns. Rank ``s`` holds ``Q_s, K_s, V_s`` ``[L, d_s]`` and can compute only its
*partial* scores ``S_s = Q_s K_sᵀ`` ``[L, L]``: the contraction ``S = Q Kᵀ = Σ_j Q[:, j] K[:, j]ᵀ``
runs over the head dimension, which is the dimension that was split. So

    S = S_0 + S_1                       (an all-reduce over the m ranks of the group)
    P = softmax(S / √d)                 (the full head's scale, not 1/√d_s)
    O_s = P V_s                         (exact per segment: V is not contracted over d)

while each rank taking its own ``softmax(S_s / √d_s) V_s`` (the plan's literal reading,
``segment_local``) computes something else. Integer entries keep ``S_0``, ``S_1`` and ``S``
checkable with pencil and paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the example's Q, K, V: [L = 3, d = 4]; columns 0-1 are segment 0, columns 2-3 segment 1
TINY_Q = ((1, 0, 1, 1), (0, 1, 1, 0), (1, 1, 0, 1))
TINY_K = ((1, 1, 0, 1), (0, 1, 1, 1), (1, 0, 1, 0))
TINY_V = ((1, 0, 2, 0), (0, 1, 0, 2), (2, 2, 1, 1))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``x`` [..., L]."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Contraction:
    """One head split into ``m`` segments: what each rank holds and what it must compute."""

    q: np.ndarray  # [L, d]
    k: np.ndarray  # [L, d]
    v: np.ndarray  # [L, d]
    m: int

    @property
    def d(self) -> int:
        return self.q.shape[1]

    @property
    def d_s(self) -> int:
        return self.d // self.m

    def segment(self, s: int) -> slice:
        return slice(s * self.d_s, (s + 1) * self.d_s)

    @property
    def partial_scores(self) -> list[np.ndarray]:
        """S_s = Q_s K_sᵀ [L, L], one per rank of the group."""
        return [self.q[:, self.segment(s)] @ self.k[:, self.segment(s)].T for s in range(self.m)]

    @property
    def scores(self) -> np.ndarray:
        """S = Σ_s S_s [L, L]: what the all-reduce over the group leaves on every rank."""
        return sum(self.partial_scores)

    @property
    def probabilities(self) -> np.ndarray:
        """P = softmax(S / √d) [L, L]."""
        return softmax(self.scores / math.sqrt(self.d))

    @property
    def output(self) -> np.ndarray:
        """concat_s P V_s [L, d]: the partitioned result (equal to dense attention)."""
        return np.concatenate([self.probabilities @ self.v[:, self.segment(s)] for s in range(self.m)], axis=1)

    @property
    def segment_local_probabilities(self) -> list[np.ndarray]:
        """softmax(S_s / √d_s) per rank: the plan's literal per-segment softmax (wrong)."""
        return [softmax(S / math.sqrt(self.d_s)) for S in self.partial_scores]

    @property
    def segment_local_output(self) -> np.ndarray:
        return np.concatenate([p @ self.v[:, self.segment(s)]
                               for s, p in enumerate(self.segment_local_probabilities)], axis=1)

    @property
    def dense_output(self) -> np.ndarray:
        """softmax(Q Kᵀ / √d) V: one device, no partition (the reference)."""
        return softmax(self.q @ self.k.T / math.sqrt(self.d)) @ self.v

    def error(self, out: np.ndarray) -> float:
        """max |out − dense|."""
        return float(np.abs(out - self.dense_output).max())


def tiny_example() -> Contraction:
    """The hand-checkable example of notebook 01 (L = 3, d = 4, m = 2, integer Q, K, V)."""
    return Contraction(np.array(TINY_Q, float), np.array(TINY_K, float), np.array(TINY_V, float), 2)


def _matrix(ax, a: np.ndarray, title: str, fmt: str, cmap: str, vmin: float, vmax: float) -> None:
    ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=10,
                color="white" if (v - vmin) > 0.6 * (vmax - vmin) else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(a.shape[1]), [f"k{j}" for j in range(a.shape[1])])
    ax.set_yticks(range(a.shape[0]), [f"q{i}" for i in range(a.shape[0])])


def plot_partial_scores(ex: Contraction):
    """Top row: each rank's partial scores and their sum (the all-reduce). Bottom row: what a
    rank would use if it took its own softmax (wrong), and the right probabilities."""
    import matplotlib.pyplot as plt

    m = ex.m
    fig, axes = plt.subplots(2, m + 1, figsize=(2.6 * (m + 1), 5.4))
    top = max(float(ex.scores.max()), 1.0)
    for s, S in enumerate(ex.partial_scores):
        _matrix(axes[0, s], S, f"rank {s}: $S_{s} = Q_{s}K_{s}^T$ (partial)", "g", "Blues", 0, top)
        _matrix(axes[1, s], ex.segment_local_probabilities[s],
                f"rank {s} alone: softmax($S_{s}/\\sqrt{{d_s}}$)", ".2f", "Reds", 0, 1)
    _matrix(axes[0, m], ex.scores, "all-reduce: $S = " + " + ".join(f"S_{s}" for s in range(m)) + "$",
            "g", "Blues", 0, top)
    _matrix(axes[1, m], ex.probabilities, "right: softmax($S/\\sqrt{d}$)", ".2f", "Greens", 0, 1)
    fig.tight_layout()
    return fig


def teaching_plan():
    """The example as a Plan: one head (one head group) of d = 4 split into m = 2 segments, L = 3,
    B = 1, a 4-wide model — notebook 03 draws its attention graph before the full-size ones."""
    from helixlib.plan import ModelConfig, Partition, build_plan

    model = ModelConfig("tiny-example", hidden=4, heads=1, mlp_hidden=16, seq_len=3, batch=1, layers=1,
                        dtype="fp32", source="notebook 01's hand-checkable example")
    return build_plan(model, Partition(1, 2))


def teaching_dag_source(name: str = "mha_teaching") -> tuple[object, str]:
    """(graph, DOT source) of :func:`teaching_plan`'s attention, forward only, drawn top-down
    (the full drawings run left to right; with two lanes, top-down reads like the maths)."""
    from helixlib.dag.graph import build_dag
    from helixlib.dag.render import dot_source

    plan = teaching_plan()
    graph = build_dag(plan, "mha", backward=False)
    src = dot_source(graph, plan, name)
    if "rankdir=LR" not in src:
        raise RuntimeError("helixlib.dag.render no longer sets rankdir=LR; update teaching_dag_source")
    return graph, src.replace("rankdir=LR", "rankdir=TB", 1)
