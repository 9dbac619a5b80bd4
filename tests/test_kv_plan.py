"""The Plan of the other second level, KV-sequence shards (Helix Parallelism), of grouped-query
models, and of decode steps: shapes, FLOPs, bytes, collectives, placement, checks, bad input."""

import json

import pytest
from helpers import run_cli

from helixlib import HelixInputError, Partition, build_plan, factorisations, load_model
from helixlib.plan import StepPhase, decode_plans, kv_layout
from helixlib.plan.checks import run_checks
from helixlib.plan.kv_summary import kv_summary
from helixlib.plan.partition import valid_partitions


@pytest.fixture(scope="module")
def gqa():
    return load_model("helix-tiny-gqa")


def plan_json(*args):
    return json.loads(run_cli("plan", "--json", *args, check=True).stdout)


def test_presets_from_published_configurations():
    l70, l405, mla = load_model("llama3-70b"), load_model("llama31-405b"), load_model("deepseek-r1-mla")
    assert (l70.hidden, l70.heads, l70.kv_heads, l70.head_dim, l70.mlp_hidden, l70.mlp, l70.layers) == (
        8192, 64, 8, 128, 28672, "swiglu", 80)
    assert (l405.hidden, l405.heads, l405.kv_heads, l405.mlp_hidden, l405.layers) == (16384, 128, 8, 53248, 126)
    assert (mla.heads, mla.kv_heads, mla.head_dim_qk, mla.head_dim_v) == (128, 1, 576, 512)
    assert all("huggingface.co" in m.source for m in (l70, l405, mla))
    # blocks + embeddings of the Llama shapes land on the names (LayerNorm and biases add < 0.1 %)
    assert 69e9 < l70.params + l70.embedding_params < 72e9
    assert 400e9 < l405.params + l405.embedding_params < 410e9


def test_cli_kv_plan_json_all_to_all(gqa):
    j = plan_json("--model", "helix-tiny-gqa", "--head-groups", "4", "--kv-shards", "4", "--phase", "prefill")
    assert j["phase"] == "prefill" and j["partition"]["kv_shards"] == 4 and j["world_size"] == 16
    a2a = [c for c in j["collectives"] if c["kind"] == "all_to_all"]
    assert {c["name"] for c in a2a} == {"o_all_to_all", "lse_all_to_all", "o_all_to_all.backward",
                                        "lse_all_to_all.backward"}
    B, L, h_g, dv = 2, 32, 4, 16
    o = next(c for c in a2a if c["name"] == "o_all_to_all")
    lse = next(c for c in a2a if c["name"] == "lse_all_to_all")
    assert o["phase"] == "forward" and o["ranks"] == [0, 1, 2, 3] and o["elements"] == B * L * h_g * dv
    assert o["bytes"] == 8 * B * L * h_g * dv and lse["elements"] == B * L * h_g
    assert o["bytes_sent_per_rank"] == round(o["bytes"] * 3 / 4)  # (p-1)/p leaves the rank
    assert all(c["ok"] for c in j["checks"])
    assert [r["out_heads"] for r in j["ranks"][:4]] == [[0], [1], [2], [3]]


def test_lse_travels_in_fp32_with_bf16_partials(gqa):
    plan = build_plan(gqa.replace(dtype="bf16"), Partition(4, kv_shards=4))
    kinds = {c.name: c.dtype_bytes for c in plan.collectives if c.phase == "forward"}
    assert kinds["o_all_to_all"] == 2 and kinds["lse_all_to_all"] == 4 and kinds["out_proj_allreduce"] == 2


def test_decode_all_to_all_does_not_grow_with_the_context_but_partial_scores_do(gqa):
    def fwd(part, S):
        plan = build_plan(gqa.replace(seq_len=S), part, phase="decode")
        return {c.name: c.elements for c in plan.collectives}
    kv32, kv64 = fwd(Partition(4, kv_shards=4), 32), fwd(Partition(4, kv_shards=4), 64)
    assert kv32["o_all_to_all"] == kv64["o_all_to_all"] == 2 * 1 * 4 * 16  # B · 1 token · h_g · d_v
    hd32, hd64 = fwd(Partition(4, 4), 32), fwd(Partition(4, 4), 64)
    assert hd32["scores_allreduce"] == 2 * 4 * 1 * 33 and hd64["scores_allreduce"] == 2 * 4 * 1 * 65


def test_kv_prefill_matmul_flops_closed_form(gqa):
    """Q redundant on the p shards, K/V of the owned positions only, scores and P·V over every
    (query, key) pair once, out-projection and SwiGLU once."""
    B, L, D, F, H, K, dq, dv = 2, 32, 256, 512, 16, 4, 32, 16
    for n, p in ((1, 16), (2, 8), (4, 4), (8, 2)):
        plan = build_plan(gqa, Partition(n, kv_shards=p))
        k_heads = K * max(n // K, 1)  # KV heads summed over the n groups (copies when n > K)
        closed = (2 * B * L * D * H * dq * p + 2 * B * L * D * k_heads * (dq + dv)
                  + 2 * B * H * L * L * (dq + dv) + 2 * B * L * H * dv * D + 6 * B * L * D * F)
        assert sum(plan.rank_flops(r, "matmul") for r in range(16)) == closed, (n, p)


def test_every_kv_position_is_owned_once_and_load_balance_is_shown(gqa):
    rr = build_plan(gqa, Partition(2, kv_shards=8))
    cont = build_plan(gqa, Partition(2, kv_shards=8, kv_placement="contiguous"))
    assert rr.partition.tokens_per_block == cont.partition.tokens_per_block == 2  # 16 blocks for 8 shards
    for plan in (rr, cont):
        group = [s for s in plan.shards if s.head_group == 0]
        assert sorted(t for s in group for t in s.owned_positions) == list(range(32))
    assert rr.shards[0].owned_positions == [0, 1, 16, 17] and cont.shards[0].owned_positions == [0, 1, 2, 3]
    # causal prefill: the first shard's keys are seen by almost every query under contiguous placement
    assert kv_summary(cont)["imbalance"] > 1.8 > 1.5 > kv_summary(rr)["imbalance"] > 1.0
    pairs = kv_summary(rr)["visible_pairs_per_rank"][:8]
    assert sum(pairs) == 32 * 33 // 2 and pairs[0] == (32 + 31) + (16 + 15)  # queries seeing 0, 1, 16, 17


def test_decode_appends_to_the_owner_of_the_block(gqa):
    rr = decode_plans(gqa, Partition(4, kv_shards=4, tokens_per_block=2), 8)
    owners = [next(s.kv_shard for s in p.shards if s.head_group == 0 and any(o.name == "k_append" and
                   o.output_shape[1] > o.params[0][1][1] for o in p.rank_ops(s.rank))) for p in rr]
    assert owners == [0, 0, 1, 1, 2, 2, 3, 3]  # positions 32..39 in blocks of 2, round-robin over 4
    cont = decode_plans(gqa, Partition(4, kv_shards=4, tokens_per_block=2, kv_placement="contiguous"), 3)
    assert [kv_layout.owner(32 + t, 32, 4, 2, "contiguous") for t in range(3)] == [3, 3, 3]
    assert [p.shards[3].kv_length for p in cont] == [8, 9, 10]  # the last shard grows
    assert [p.context for p in rr[:3]] == [32, 33, 34]


def test_gqa_duplicated_kv_bytes(gqa):
    """n > K head groups copy KV heads: the Plan shows (n/K - 1) x the unique KV bytes."""
    unique = 2 * 32 * 4 * (32 + 16) * 8  # B · L · K · (d_qk + d_v) · β
    for n, m in factorisations(16):
        kv = kv_summary(build_plan(gqa, Partition(n, m)))
        assert kv["unique_kv_bytes"] == unique
        assert kv["duplicated_kv_bytes"] == (max(n // 4, 1) - 1) * unique, (n, m)
    for part in valid_partitions(gqa, 16, kv=True):
        kv = kv_summary(build_plan(gqa, part))
        assert kv["duplicated_kv_bytes"] == (part.kv_share - 1) * unique
    mla = load_model("deepseek-r1-mla").replace(seq_len=64, batch=1)
    assert kv_summary(build_plan(mla, Partition(1, kv_shards=8), phase="decode"))["copies"] == 1
    assert kv_summary(build_plan(mla, Partition(8, 1), phase="decode"))["copies"] == 8  # MLA: TP > 1 copies all


@pytest.mark.parametrize("phase", list(StepPhase))
def test_every_partition_of_16_both_levels_builds_and_checks(gqa, phase):
    parts = valid_partitions(gqa, 16) + valid_partitions(gqa, 16, kv=True)
    assert [p.label for p in parts] == ["1x16", "2x8", "4x4", "8x2", "16x1", "1x16kv", "2x8kv", "4x4kv", "8x2kv"]
    for part in parts:
        plan = build_plan(gqa, part, phase=phase)
        assert all(c.ok for c in run_checks(plan)), [c for c in run_checks(plan) if not c.ok]
        L = 1 if phase == "decode" else 32
        assert all(plan.programs[r][-1].output_shape == (2, L, 256) for r in range(16))


def _broken(plan, fn):
    import copy
    p = copy.deepcopy(plan)
    fn(p)
    return {r.name: r.ok for r in run_checks(p)}


def test_kv_checks_fail_on_broken_plans(gqa):
    import dataclasses
    plan = build_plan(gqa, Partition(4, kv_shards=4))

    def twice(p):
        p.shards[1] = dataclasses.replace(p.shards[1], positions=p.shards[0].positions)
    assert not _broken(plan, twice)["every_kv_position_owned_once"]

    def heads(p):
        p.shards[1] = dataclasses.replace(p.shards[1], out_heads=(0, 1))
    got = _broken(plan, heads)
    assert not got["every_head_combined_once"] and not got["weights_partitioned_exactly"]

    def kvh(p):
        p.shards[5] = dataclasses.replace(p.shards[5], kv_heads=(0, 1))
    assert not _broken(plan, kvh)["kv_heads_match_query_heads"]

    def a2a(p):
        prog = p.programs[2]
        i = next(i for i, s in enumerate(prog) if s.name == "o_all_to_all")
        prog[i] = dataclasses.replace(prog[i], output_shape=(2, 32, 2, 2, 16))
    assert not _broken(plan, a2a)["all_to_all_aligned"]


@pytest.mark.parametrize("args,message", [
    (["--kv-shards", "4", "-m", "2"], "error: kv_shards: cannot be combined with dim_segments > 1"),
    (["--kv-shards", "4", "--kv-heads", "3"], "error: kv_heads: must divide heads (16), got 3"),
    (["-n", "1", "--kv-shards", "16", "--seq-len", "8"], "error: kv_shards: must be at most seq_len (8)"),
    (["--kv-shards", "3"], "error: kv_shards: must divide the heads per group"),
    (["-n", "1", "--kv-shards", "16", "--tokens-per-block", "4"], "error: tokens_per_block: leaves 8 blocks"),
    (["--kv-shards", "4", "--qk-mode", "gather_qk"], "error: qk_mode: applies to the head-dim split"),
    (["--kv-shards", "4", "--hop-b", "2"], "error: hop_b: overlaps the decode All-to-All"),
    (["-m", "4", "--hop-b", "2"], "error: hop_b: overlaps the KV shards' All-to-All: it needs kv_shards > 1"),
    (["--kv-shards", "4", "--hop-b", "3", "--phase", "decode"], "error: hop_b: must divide the batch (2)"),
    (["--phase", "encode"], "error: phase: must be one of prefill, decode"),
    (["--phase", "decode", "--causal", "false"], "error: causal: decode appends one token"),
    (["--kv-shards", "4", "--kv-placement", "random"], "error: kv_placement: must be one of round_robin"),
    (["-n", "8", "-m", "2", "--kv-heads", "3"], "error: kv_heads: must divide heads (16), got 3"),
    (["-n", "2", "-m", "8", "--kv-heads", "3", "--model", "helix-tiny"], "error: kv_heads: must divide heads"),
])
def test_bad_combinations_are_one_line_errors(args, message):
    r = run_cli("plan", "--model", "helix-tiny", *args) if "--model" not in args else run_cli("plan", *args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr


def test_head_groups_must_fit_the_kv_heads():
    m = load_model("helix-tiny").replace(heads=12, hidden=192, kv_heads=4, mlp_hidden=768)
    with pytest.raises(HelixInputError, match="head_groups: must divide kv_heads"):
        build_plan(m, Partition(6, 1))


def test_decode_plan_text_and_json(gqa):
    r = run_cli("plan", "--model", "helix-tiny-gqa", "-n", "2", "--kv-shards", "8", "--phase", "decode")
    assert r.returncode == 0, r.stderr
    assert "decode step 0: 1 new token per sequence after 32 cached" in r.stdout
    assert "[ok] every_kv_position_owned_once" in r.stdout and "causal attention FLOPs per rank" in r.stdout
    j = plan_json("--model", "helix-tiny-gqa", "-n", "4", "-m", "4", "--phase", "decode")
    assert j["phase"] == "decode" and j["context"] == 32 and all(c["phase"] == "forward" for c in j["collectives"])
    assert {o["name"] for o in j["ops"]} >= {"k_append", "v_append", "fc3", "swiglu"}
    assert j["memory"][0]["kv_cache_bytes"] == 2 * 33 * 1 * (8 + 4) * 8  # B · (S+1) · k_g · (d_qk/m + d_v/m) · β


def test_audit_compares_the_deployment_with_the_best_kv_shard_partition():
    """The claims file's partition (helix-70b 4x4, concat) against every n x p KV-shard partition
    of the 16 GPUs: recomputed here from the Plans' collectives."""
    from helixlib.audit import AuditContext, load_claims
    from helixlib.audit.registry import CHECKS

    ctx = AuditContext(load_claims().context)
    got = CHECKS["kv_alternative"](ctx)

    def sent(plan):
        return max(sum(c.bytes_sent_per_rank for c in plan.collectives_for_rank(r, "forward")) for r in range(16))
    figures = {p.label: sent(build_plan(ctx.model, p)) for p in valid_partitions(ctx.model, 16, kv=True)}
    assert got.value == min(figures, key=figures.get) == "8x2kv"
    assert sent(build_plan(ctx.model, ctx.partition)) > 2 * max(figures.values())  # the partial scores
    decode = CHECKS["kv_alternative"](ctx, phase="decode", metric="memory")
    assert decode.value in figures and "one decode step" in decode.detail
    with pytest.raises(HelixInputError, match="args.metric: must be one of bytes_sent, memory"):
        CHECKS["kv_alternative"](ctx, metric="flops")


def test_dag_draws_kv_shard_and_decode_plans_with_the_same_checks(tmp_path):
    r = run_cli("dag", "--model", "helix-tiny-gqa", "-n", "2", "--kv-shards", "8", "--phase", "decode", "--compact",
                "--out", str(tmp_path), "--formats", "svg", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)["files"]
    names = {c["name"] for f in files for c in f["checks"]}
    assert names == {"dag_acyclic", "dag_nodes_have_shapes_and_ranks", "dag_edge_shapes_match",
                     "dag_collectives_match_plan", "dag_residuals_present", "dag_input_to_output_on_every_rank"}
    assert all(c["ok"] for f in files for c in f["checks"])
    svg = (tmp_path / "mha_layer_0_partitioned.svg").read_text()
    assert "o_all_to_all" in svg and "KV shards" in svg


def test_owned_ranges_agree_with_the_owner_of_each_position():
    """The block-wise ranges (fast, for 1M-token contexts) and the per-position owner (decode's
    append rule) are one placement; causal_pairs in closed form equals the count."""
    import itertools
    for L, p, tpb, placement, extra in itertools.product((5, 32, 33), (1, 3, 4), (1, 2, 8), ("round_robin",
                                                                                            "contiguous"), (0, 40)):
        if kv_layout.n_blocks(L, tpb) < p:
            continue
        for j in range(p):
            want = [t for t in range(L + extra) if kv_layout.owner(t, L, p, tpb, placement) == j]
            ranges = kv_layout.owned_ranges(j, L + extra, L, p, tpb, placement)
            assert [t for lo, hi in ranges for t in range(lo, hi)] == want
            assert kv_layout.causal_pairs(ranges, L) == sum(max(L - t, 0) for t in want)
