"""The Pareto frontier of decoding: throughput per GPU against interactivity (tokens/s per user), per
strategy, and the two comparisons the Helix paper reports.

A configuration is on the frontier when no other fitting configuration is at least as good on both axes
and better on one (``frontier_mask``: one sort, O(n log n)).

Comparisons of a ``target`` strategy (helix-kv) with the best of the ``baseline`` strategies, over the
configurations that fit (Bhatia et al., arXiv 2507.07120 §3.2 report both as "up to"):

* TTL at fixed batch: for every batch B both can run, ``min TTL(baseline, B) / min TTL(target, B)``; the
  largest ratio, and the ratio of the lowest TTLs of all (the maximum interactivity);
* at fixed TTL: for every latency budget τ the baseline can meet, the largest batch (and the highest
  tokens/s per GPU) each reaches with TTL ≤ τ; the largest ratio target / baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.estimate.decode_space import labels
from helixlib.plan.names import DecodeStrategy


def frontier_mask(x, y) -> np.ndarray:
    """True where (x[i], y[i]) is not dominated (both maximised; equal points are all kept; NaN points
    never are on it): sorted by x, a point is kept when it is the highest of its x and higher than every
    point of a larger x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = np.zeros(x.shape, dtype=bool)
    idx = np.nonzero(np.isfinite(x) & np.isfinite(y))[0]
    if not idx.size:
        return out
    order = idx[np.argsort(-x[idx], kind="stable")]
    xs, ys = x[order], y[order]
    starts = np.nonzero(np.r_[True, xs[1:] != xs[:-1]])[0]
    group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    top = np.maximum.reduceat(ys, starts)  # highest y of each x
    before = np.r_[-np.inf, np.maximum.accumulate(top)[:-1]]  # highest y of every larger x
    out[order[(ys == top[group]) & (ys > before[group])]] = True
    return out


def axes(res: dict, hop_b: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(tokens/s per user, tokens/s per GPU), with or without HOP-B."""
    sfx = "_hop_b" if hop_b else ""
    return res["tokens_per_s_per_user" + sfx], res["tokens_per_s_per_gpu" + sfx]


def frontiers(table: dict, res: dict, hop_b: bool = True) -> dict[str, np.ndarray]:
    """strategy -> row indices of its frontier (fitting configurations only), by interactivity."""
    x, y = axes(res, hop_b)
    out = {}
    for s in np.unique(table["strategy"]):
        sel = (table["strategy"] == s) & res["fits"]
        rows = np.nonzero(sel)[0]
        if rows.size:
            on = rows[frontier_mask(x[rows], y[rows])]
            out[str(s)] = on[np.argsort(x[on])]
    return out


@dataclass(frozen=True)
class Comparison:
    target: str
    baselines: tuple[str, ...]
    ttl_ratio_fixed_batch: float  # largest min-TTL ratio (baseline / target) at one batch
    at_batch: int
    max_interactivity_ratio: float  # lowest TTL of the baseline / lowest TTL of the target
    batch_ratio_fixed_ttl: float  # largest batch ratio (target / baseline) at one TTL budget
    at_ttl_s: float
    throughput_ratio_fixed_ttl: float  # largest tokens/s/GPU ratio at one TTL budget
    at_ttl_throughput_s: float
    best: dict  # the configurations behind each number (labels)

    def to_dict(self) -> dict:
        return dict(vars(self))


def _best_by_batch(batch, ttl):
    """(batches, lowest TTL at each)."""
    u, inv = np.unique(batch, return_inverse=True)
    low = np.full(u.shape, np.inf)
    np.minimum.at(low, inv, ttl)
    return u, low


def _best_within(ttl, value, budgets):
    """For each budget τ: the largest ``value`` among points with ttl ≤ τ (0 if none)."""
    order = np.argsort(ttl)
    running = np.maximum.accumulate(value[order])
    k = np.searchsorted(ttl[order], budgets, side="right")
    return np.where(k > 0, running[np.maximum(k - 1, 0)], 0.0)


def compare(table: dict, res: dict, target: str = DecodeStrategy.HELIX_KV, baselines=None,
            hop_b: bool = True) -> Comparison:
    """``target`` against the best of ``baselines`` (default: every other strategy in the table)."""
    strat = table["strategy"]
    baselines = tuple(str(s) for s in np.unique(strat) if s != target) if baselines is None else tuple(baselines)
    ttl = res["ttl_hop_b_s" if hop_b else "ttl_s"]
    tput = axes(res, hop_b)[1]
    ok = res["fits"]
    t_sel, b_sel = ok & (strat == target), ok & np.isin(strat, baselines)
    if not t_sel.any() or not b_sel.any():
        raise ValueError("no fitting configuration for the target or the baselines")
    B = table["batch"]
    tb, tl = _best_by_batch(B[t_sel], ttl[t_sel])
    bb, bl = _best_by_batch(B[b_sel], ttl[b_sel])
    common, ti, bi = np.intersect1d(tb, bb, return_indices=True)
    ratios = bl[bi] / tl[ti]
    k = int(np.argmax(ratios)) if ratios.size else 0
    budgets = np.unique(ttl[b_sel])
    batch_t = _best_within(ttl[t_sel], B[t_sel].astype(float), budgets)
    batch_b = _best_within(ttl[b_sel], B[b_sel].astype(float), budgets)
    br = batch_t / batch_b
    j = int(np.argmax(br))
    tp_t = _best_within(ttl[t_sel], tput[t_sel], budgets)
    tp_b = _best_within(ttl[b_sel], tput[b_sel], budgets)
    tr = tp_t / tp_b
    i = int(np.argmax(tr))
    pick = lambda sel, cond: labels(table, [np.nonzero(sel)[0][np.argmin(np.where(cond, ttl[sel], np.inf))]])[0]
    best = {"fastest_target": pick(t_sel, True), "fastest_baseline": pick(b_sel, True)}
    if ratios.size:
        at = int(common[k])
        best.update(target_at_batch=pick(t_sel, B[t_sel] == at), baseline_at_batch=pick(b_sel, B[b_sel] == at))
    tau = budgets[j]  # the largest batch within τ, and what runs it
    for who, sel in (("target", t_sel), ("baseline", b_sel)):
        within = sel & (ttl <= tau)
        i_b = np.nonzero(within)[0][np.argmax(B[within])]
        best[f"{who}_at_ttl"] = f"{labels(table, [i_b])[0]}, B={int(B[i_b])}, max batch {int(res['max_batch'][i_b])}"
    return Comparison(target, baselines, float(ratios[k]) if ratios.size else float("nan"),
                      int(common[k]) if ratios.size else 0, float(ttl[b_sel].min() / ttl[t_sel].min()),
                      float(br[j]), float(budgets[j]), float(tr[i]), float(budgets[i]), best)
