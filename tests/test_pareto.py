"""The Pareto frontier (non-dominated, against a brute-force check) and the comparisons with the Helix
paper's claims that notebook 08 prints (recomputed here through helixlib)."""

import numpy as np
import pytest

from helixlib.estimate.decode_space import decode_grid, evaluate_decode
from helixlib.estimate.decode_study import PAPER_CLAIMS, paper_study
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.pareto import axes, compare, frontier_mask, frontiers
from helixlib.plan.model import load_model


def brute_frontier(x, y):
    """O(n²): i is on the frontier unless some j is >= on both and > on one."""
    on = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        dom = (x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))
        on[i] = not dom.any()
    return on


@pytest.mark.parametrize("seed", range(20))
def test_frontier_equals_brute_force_with_ties_and_nans(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    x = rng.integers(0, 12, n).astype(float)  # many ties
    y = rng.integers(0, 12, n).astype(float)
    x[rng.random(n) < 0.05] = np.nan
    assert np.array_equal(frontier_mask(x, y), brute_frontier(x, y))


@pytest.fixture(scope="module")
def sweep():
    model, cluster = load_model("helix-paper-llama-405b"), load_cluster("gb200-nvl72")
    t = decode_grid()
    return t, evaluate_decode(t, model, cluster)


def test_frontier_points_are_non_dominated_and_dominate_the_rest(sweep):
    t, r = sweep
    x, y = axes(r)
    f = frontiers(t, r)
    assert set(f) == {"megatron-tp", "helix", "helix-kv"}
    for s, rows in f.items():
        sel = np.nonzero((t["strategy"] == s) & r["fits"])[0]
        xs, ys = x[sel], y[sel]
        for i in rows:  # nothing of its strategy beats it on both
            assert not np.any((xs >= x[i]) & (ys >= y[i]) & ((xs > x[i]) | (ys > y[i])))
        fx, fy = x[rows], y[rows]
        for j in sel:  # everything else is matched or beaten by a frontier point
            assert np.any((fx >= x[j]) & (fy >= y[j]))
        ux, uy = np.unique(np.stack([fx, fy]), axis=1)  # equal points (a replica more, a batch twice) all stay
        assert np.all(np.diff(ux) > 0) and np.all(np.diff(uy) < 0)  # a staircase, by interactivity
        assert np.all(r["fits"][rows])


def test_compare_definitions_by_hand(sweep):
    t, r = sweep
    c = compare(t, r, hop_b=False)
    ttl, ok = r["ttl_s"], r["fits"]
    kv = ok & (t["strategy"] == "helix-kv")
    base = ok & (t["strategy"] != "helix-kv")
    assert c.max_interactivity_ratio == pytest.approx(ttl[base].min() / ttl[kv].min())
    at_b = t["batch"] == c.at_batch
    assert c.ttl_ratio_fixed_batch == pytest.approx(ttl[base & at_b].min() / ttl[kv & at_b].min())
    within = ttl <= c.at_ttl_s
    assert c.batch_ratio_fixed_ttl == pytest.approx(t["batch"][kv & within].max() / t["batch"][base & within].max())
    for b in np.unique(t["batch"][kv]):  # no batch does better than the reported one
        if (base & (t["batch"] == b)).any():
            assert ttl[base & (t["batch"] == b)].min() / ttl[kv & (t["batch"] == b)].min() <= c.ttl_ratio_fixed_batch


def test_paper_study_numbers():
    """What notebook 08 prints about the published claims (see helixlib.estimate.decode_study)."""
    study = paper_study()
    llama = study["helix-paper-llama-405b"]
    assert llama["claims"] == PAPER_CLAIMS["helix-paper-llama-405b"]
    v = llama["vs_all"]
    assert round(v.max_interactivity_ratio, 2) == 1.27  # the paper: 1.13x
    assert v.batch_ratio_fixed_ttl == 4.0  # the paper: 4x
    assert round(v.throughput_ratio_fixed_ttl, 1) == 4.3
    mla = study["helix-paper-mla-dense"]
    assert mla["vs_all"].max_interactivity_ratio < 1  # our dense absorbed W_Q is kept on every KV shard
    assert mla["vs_all"].batch_ratio_fixed_ttl == 8.0  # the paper: 32x for DeepSeek-R1
