"""The decode estimate: the published roofline formulas, the layout per strategy, the properties the
issue asks for (TTL monotone in S, KV bytes per GPU non-increasing in KVP, duplication exactly when TP over
heads exceeds K) over whole grids, HOP-B, memory and the largest batch, and the one-configuration checks."""

import math

import numpy as np
import pytest

from helixlib.core.errors import HelixInputError
from helixlib.estimate.alphabeta import CommTime
from helixlib.estimate.decode import ACT_BYTES, DECODE_FIELDS, decode_costs, hop_b_time
from helixlib.estimate.decode_estimate import DecodeConfig, check_decode_config, decode_estimate
from helixlib.estimate.decode_layout import decode_layout, model_kv_elements
from helixlib.estimate.decode_roofline import dram_read_times, published_rooflines
from helixlib.estimate.decode_space import decode_grid, evaluate_decode
from helixlib.estimate.hardware import load_cluster
from helixlib.plan.model import ModelConfig, load_model

S1M = 2 ** 20


@pytest.fixture(scope="module")
def nvl72():
    return load_cluster("gb200-nvl72")


@pytest.fixture(scope="module")
def llama405():
    return load_model("helix-paper-llama-405b")


@pytest.fixture(scope="module")
def mla():
    return load_model("helix-paper-mla-dense")


def p1_model():
    """The Helix paper's v1 Fig. 1 model (arXiv 2507.07120 Appendix A): Q = 128, K = 8, Hsz = 128, F = 65536."""
    return ModelConfig("p1-fig1", 128 * 128, 128, 65536, S1M, 8, 1, kv_heads=8, mlp="swiglu")


@pytest.mark.parametrize("tp", [1, 2, 4, 8, 16, 32, 64])
def test_tp_read_times_are_the_papers_appendix_a_formulas(tp):
    """KV = B·2·⌈K/TP⌉·Hsz·S·bytes/BW, weights = (2·H·(Q/TP)·Hsz + 2·H·⌈K/TP⌉·Hsz + 3·H·F/TP)·bytes/BW,
    FP4 (0.5 B) at 8000 GB/s: equal to rounding (1e-12 relative: the same sums in another order)."""
    B, Q, K, Hsz, F, b, BW = 8, 128, 8, 128, 65536, 0.5, 8000e9
    H = Q * Hsz
    kv, w = dram_read_times(p1_model(), "megatron-tp", tp, 1, S1M, B, BW, b, b)
    assert kv == pytest.approx(B * 2 * math.ceil(K / tp) * Hsz * S1M * b / BW, rel=1e-12)
    assert w == pytest.approx((2 * H * (Q / tp) * Hsz + 2 * H * math.ceil(K / tp) * Hsz + 3 * H * F / tp) * b / BW,
                              rel=1e-12)


def test_tp8_matches_the_numbers_derived_from_the_paper():
    kv, w = dram_read_times(p1_model(), "megatron-tp", 8, 1, S1M, 8, 8000e9, 0.5, 0.5)
    assert (round(kv * 1e6, 1), round(w * 1e6, 1)) == (134.2, 29.6)


def test_published_rooflines_have_the_published_shapes():
    """TensorRT-LLM blog 22 (K = 1, 576/512, FP8, B = 8): KV reads flat in TP (duplicated from TP = K = 1),
    linear in S, 1/KVP with KV shards; weights 1/TP."""
    tp, ctx, kvp = published_rooflines()
    assert np.all(tp.kv_read_s == tp.kv_read_s[0])
    assert tp.kv_read_s[0] == pytest.approx(8 * S1M * 576 / 8e12, rel=1e-12)  # latent: 576 B per token
    split = tp.weight_read_s * 8e12 - 7168 * 576  # all but the one latent projection W_K [D, 576] halve
    assert np.allclose(split[1:] / split[:-1], 0.5, rtol=1e-12)
    assert np.allclose(ctx.kv_read_s / ctx.x, ctx.kv_read_s[0] / ctx.x[0], rtol=1e-12)
    assert np.all(ctx.weight_read_s == ctx.weight_read_s[0])
    assert np.allclose(kvp.kv_read_s * kvp.x, kvp.kv_read_s[0], rtol=1e-12)
    assert np.all(np.diff(kvp.weight_read_s) < 0)
    lay = decode_layout(load_model("helix-roofline-dense"), "helix-kv", 1, 64, S1M, "latent")
    assert kvp.weight_read_s[-1] > (lay.q_params + lay.kv_params) / 8e12  # the floor every KV shard keeps


def test_duplication_exactly_when_heads_split_exceeds_k(llama405, mla):
    for model in (llama405, mla, p1_model()):
        t = decode_grid(gpus=(1, 2, 4, 8, 16, 32, 64, 128), batches=(1,), strategies=("megatron-tp", "helix"),
                        pipelines=(1,), replicas=(1,))
        lay = decode_layout(model, "helix", t["split"], t["second"], S1M)
        ok = lay.valid
        assert ok.sum() > 10
        assert np.array_equal(lay.duplication[ok] > 1, t["split"][ok] > model.kv_heads)
        assert np.allclose(lay.duplication[ok], np.maximum(1, t["split"][ok] / model.kv_heads))
        # the cache the group stores: model's cache x duplication (helix splits columns, not copies)
        total = lay.kv_elements[ok] * t["split"][ok] * t["second"][ok]
        assert np.allclose(total, model_kv_elements(model, S1M) * lay.duplication[ok])


def test_kv_bytes_per_gpu_non_increasing_in_kvp(llama405, mla, nvl72):
    for model, layout in ((llama405, "separate"), (mla, "latent")):
        for tp_a in (1, 2, 4, 8):
            for S in (1000, 4097, S1M):
                kvp = np.arange(1, 129)
                r = decode_costs(model, nvl72, "helix-kv", tp_a, kvp, S, 64, kv_layout=layout)
                kv = decode_layout(model, "helix-kv", tp_a, kvp, S, layout).kv_elements
                ok = decode_layout(model, "helix-kv", tp_a, kvp, S, layout).valid
                assert np.all(np.diff(kv[ok]) <= 0)
                fit = r["valid"]
                assert np.all(np.diff(r["kv_cache_bytes"][fit]) <= 0)


def test_ttl_strictly_increasing_in_context_for_every_configuration(llama405, nvl72):
    """Every valid row of the grid, S from 1K to 4M tokens: more context, longer TTL (with and without HOP-B)."""
    contexts = tuple(2 ** k for k in range(10, 23))
    t = decode_grid(contexts=contexts, batches=(1, 8, 64))
    r = evaluate_decode(t, llama405, nvl72)
    key = np.stack([np.unique(t[c], return_inverse=True)[1] for c in ("strategy", "split", "second", "pipeline",
                                                                       "replicas", "batch")])
    order = np.lexsort((t["context"], *key))
    for f in ("ttl_s", "ttl_hop_b_s"):
        ttl = r[f][order].reshape(-1, len(contexts))
        valid = r["valid"][order].reshape(-1, len(contexts)).all(axis=1)
        assert valid.sum() > 500
        assert np.all(np.diff(ttl[valid], axis=1) > 0)


def test_the_breakdown_sums_to_the_ttl_and_hop_b_never_hurts(llama405, nvl72):
    t = decode_grid(contexts=(4096, S1M))
    r = evaluate_decode(t, llama405, nvl72)
    ok = r["valid"]
    parts = sum(r[k] for k in ("weight_read_s", "kv_read_s", "compute_s", "launch_s", "communication_s"))
    assert np.allclose(parts[ok], r["ttl_s"][ok], rtol=1e-12)
    assert np.all(r["ttl_hop_b_s"][ok] <= r["ttl_s"][ok])
    tp = ok & (t["strategy"] == "megatron-tp")
    assert np.array_equal(r["ttl_hop_b_s"][tp], r["ttl_s"][tp])  # nothing to overlap
    assert np.allclose(r["tokens_per_s_per_gpu"][ok], t["batch"][ok] / (r["ttl_s"][ok] * t["gpus"][ok]))
    assert np.allclose(r["tokens_per_s_per_user"][ok], 1 / r["ttl_s"][ok])


def test_hop_b_reproduces_the_papers_figure_3():
    """8 requests, attention 2 units each, All-to-All 1.2 each, no latency: 25.6 units in lockstep, 8·2 + 1.2
    = 17.2 pipelined (the figure prints 17). A latency per chunk makes small chunks lose."""
    assert float(hop_b_time(16.0, CommTime(0.0, 9.6, 9.6), 8)) == pytest.approx(17.2)
    assert float(hop_b_time(16.0, CommTime(0.0, 9.6, 9.6), 1)) == pytest.approx(25.6)
    assert float(hop_b_time(16.0, CommTime(100.0, 9.6, 109.6), 8)) == pytest.approx(125.6)  # α each chunk: none


def test_attention_communication_grows_with_s_for_the_head_dim_split_only(llama405, nvl72):
    S = np.array([2 ** 14, 2 ** 16, 2 ** 18, 2 ** 20])
    hd = decode_costs(llama405, nvl72, "helix", 8, 8, S, 8)["attention_comm_s"]
    kv = decode_costs(llama405, nvl72, "helix-kv", 8, 8, S, 8)["attention_comm_s"]
    slope = np.diff(hd) / np.diff(S)  # α + bytes/bandwidth, bytes = B·(H/n)·S·2: linear in S
    assert np.all(slope > 0) and np.allclose(slope, slope[0], rtol=1e-9)
    assert np.all(kv == kv[0]) and kv[0] > 0
    lay = decode_layout(llama405, "helix", 8, 8, S1M)
    assert lay.heads * S1M * ACT_BYTES * 8 == 8 * 16 * S1M * 2  # [B, H/n, S] in bf16


def test_largest_batch_fits_and_one_more_step_does_not(llama405, mla, nvl72):
    for model, layout in ((llama405, "separate"), (mla, "latent")):
        t = decode_grid(batches=(64,))
        r = evaluate_decode(t, model, nvl72, kv_layout=layout)
        idx = np.nonzero(r["valid"] & (r["max_batch"] > 0))[0]
        assert idx.size > 100
        step = t["pipeline"][idx] * t["replicas"][idx]
        assert np.all(r["max_batch"][idx] % step == 0)
        for s in np.unique(t["strategy"][idx]):
            i = idx[t["strategy"][idx] == s]
            for extra, want in ((0, True), (1, False)):
                B = r["max_batch"][i] + extra * t["pipeline"][i] * t["replicas"][i]
                rr = decode_costs(model, nvl72, str(s), t["split"][i], t["second"][i], S1M, B, t["pipeline"][i],
                                  t["replicas"][i], kv_layout=layout)
                assert np.all(rr["fits"] == want), s
                assert np.all(rr["max_batch"] == r["max_batch"][i])  # it does not depend on the batch asked


def test_validation_agrees_with_the_vector_valid_on_every_row(llama405, mla, nvl72):
    dgx = load_cluster("dgx-h200")
    for model, cluster in ((llama405, nvl72), (mla, dgx)):
        t = decode_grid(gpus=(1, 2, 4, 8, 16, 24, 64, 72), batches=(1, 6), contexts=(4, S1M))
        r = evaluate_decode(t, model, cluster)
        assert 0 < r["valid"].sum() < len(r["valid"])
        for i in range(len(r["valid"])):
            cfg = DecodeConfig(str(t["strategy"][i]), int(t["split"][i]), int(t["second"][i]), int(t["context"][i]),
                               int(t["batch"][i]), int(t["pipeline"][i]), int(t["replicas"][i]))
            try:
                check_decode_config(model, cluster, cfg)
                checked = True
            except HelixInputError:
                checked = False
            assert checked == bool(r["valid"][i]), cfg


def test_one_configuration_equals_its_row_in_the_sweep(llama405, nvl72):
    cfg = DecodeConfig("helix-kv", 8, 8, S1M, 16, hop_b=True)
    est = decode_estimate(llama405, nvl72, cfg)
    r = decode_costs(llama405, nvl72, "helix-kv", 8, 8, S1M, 16)
    assert all(est.costs[f] == pytest.approx(float(r[f][0]), rel=1e-12) for f in DECODE_FIELDS)
    d = est.to_dict()
    assert d["decode"]["ttl_s"] == est.costs["ttl_hop_b_s"] < est.costs["ttl_s"] * 1.0000001
    assert d["memory"]["kv_cache_bytes"] == pytest.approx(16 * 126 * (S1M // 8) * 1 * 256 * 1)  # fp8, one KV head
    assert d["decode"]["tokens_per_s_per_user"] == pytest.approx(1 / d["decode"]["ttl_s"])


@pytest.mark.parametrize("cfg,field", [
    (DecodeConfig("megatron-tp", 3, 1, S1M, 8), "tensor_parallel"),
    (DecodeConfig("helix", 4, 3, S1M, 8), "dim_segments"),
    (DecodeConfig("helix-kv", 16, 4, S1M, 8), "head_groups"),
    (DecodeConfig("helix-kv", 8, 64, 32, 8), "kv_shards"),
    (DecodeConfig("helix-kv", 8, 8, S1M, 5, pipeline=2), "batch"),
    (DecodeConfig("helix-kv", 8, 8, S1M, 8, pipeline=5), "pipeline_parallel"),
    (DecodeConfig("ring", 8, 8, S1M, 8), "strategy"),
    (DecodeConfig("helix-kv", 8, 8, S1M, 8, kv_dtype="fp4"), "kv_dtype"),
])
def test_bad_configurations_name_the_option(llama405, nvl72, cfg, field):
    with pytest.raises(HelixInputError) as e:
        decode_estimate(llama405, nvl72, cfg)
    assert e.value.field == field


def test_fp8_needs_a_device_with_fp8(llama405):
    with pytest.raises(HelixInputError, match="has no matmul peak"):
        decode_estimate(llama405, load_cluster("dgx-a100"), DecodeConfig("helix-kv", 8, 1, 4096, 1))
    cfg = DecodeConfig("helix-kv", 8, 1, 4096, 1, weight_dtype="bf16", kv_dtype="bf16")
    est = decode_estimate(llama405, load_cluster("dgx-a100"), cfg)
    assert est.costs["weights_bytes"] == pytest.approx(2 * llama405.layers * decode_layout(
        llama405, "helix-kv", 8, 1, 4096).weight_params + 2 * 2 * llama405.vocab * llama405.hidden / 8)
