"""The audit of the deployment plan: every claim computed, every verdict reproducible from the CLI."""

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import run_cli

from helixlib import HelixInputError
from helixlib.audit import CHECKS, CLAIMS_FILE, Claim, Computed, deployment_summary, judge, load_claims
from helixlib.core.presets import DATA_DIR

PLAN_MD = DATA_DIR / "deployment_plan.md"  # the case study, stored verbatim
SHARED_PLAN_MD = Path(__file__).resolve().parents[2] / "shared" / "seed" / "deployment_plan.md"

# The verdicts this workbook reaches for data/deployment_plan.md (reviewed by hand;
# each is computed by the CLI below, and would change if a computation changed).
EXPECTED = {
    "holds": [
    "summary.gpus", "model.mlp_ratio", "model.head_dim", "level1.group0", "level1.group1", "level1.group2",
    "level1.group3", "level2.segment0", "level2.segment1", "level2.segment2", "level2.segment3",
    "partitioning.match", "mha.input_shape", "mha.layernorm_shape", "mha.qkv.weight", "mha.qkv.output",
    "mha.kv.shapes", "mha.scores.shape", "mha.attention_output.shape", "mha.concat_phase1",
    "mha.concat_phase2", "mha.concat_exact", "mlp.fc1.weight", "mlp.fc1.output", "mlp.fc2.input",
    "mlp.fc2.weight", "balance.compute", "load.mlp_ops", "balance.memory", "comm.intra_group_size",
    "comm.fc2_allreduce", "validation.aligned", "validation.concat", "validation.local_sum",
    "validation.batch_seq", "validation.partitions_match", "validation.one_partition",
    "validation.no_overload", "risk.dimensional", "risk.imbalance", "perf.bottleneck",
    "dag.finest_granularity", "dag.shapes", "dag.gpus", "dag.communication_nodes", "dag.residuals",
    "dag.acyclic", "dag.complete_flow", "commands.render", "runtime.script_output", "risk.cycles",
    "conclusion.balance", "conclusion.alignment",
    ],
    "wrong": [
    "mha.qkv.flops_per_partition", "mha.qkv.flops_total", "mha.scores.flops", "mha.attn_v.flops",
    "mha.per_segment_attention", "mlp.fc1.flops_per_gpu", "mlp.fc1.flops_total", "mlp.fc2.output",
    "mlp.fc2.flops_per_gpu", "mlp.fc2.flops_total", "load.mha_ops", "comm.mha_pattern",
    "comm.inter_group_size", "comm.fc1_gather", "risk.least_traffic", "risk.kv_shards", "balance.activations_split",
    "perf.speedup", "perf.comm_overhead", "perf.memory_reduction", "runtime.estimate", "risk.memory_overflow",
    "conclusion.communication", "conclusion.optimal", "conclusion.production_ready",
    ],
    "unverifiable as stated": [
    "model.params", "balance.comm_buffers", "perf.strong_scaling", "perf.weak_scaling", "validation.topology",
    "monitoring.points",
    ],
}


@pytest.fixture(scope="module")
def cli_audit():
    r = run_cli("audit", "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.mark.slow
def test_every_claim_gets_its_verdict_from_the_cli(cli_audit):
    got = {v["id"]: v["verdict"] for v in cli_audit["verdicts"]}
    want = {i: k for k, ids in EXPECTED.items() for i in ids}
    assert got == want
    assert cli_audit["summary"] == {k: len(v) for k, v in EXPECTED.items()}
    for v in cli_audit["verdicts"]:
        assert v["explanation"]
        if v["verdict"] == "wrong" and isinstance(v["claimed"], (int, float)) and not isinstance(v["claimed"], bool):
            assert v["ratio"] is not None


@pytest.mark.slow
def test_key_numbers_of_the_audit(cli_audit):
    v = {x["id"]: x for x in cli_audit["verdicts"]}
    assert v["mha.qkv.flops_per_partition"]["ratio"] == pytest.approx(6.0, rel=0.01)  # x2 FLOPs/MAC, x3 Q,K,V
    assert v["mlp.fc1.flops_per_gpu"]["ratio"] == pytest.approx(2.0, rel=0.01)
    assert v["mha.scores.flops"]["ratio"] == pytest.approx(2 / 1000, rel=0.01)  # T not P, and x2
    assert v["mlp.fc2.output"]["computed"] == [1024, 10000, 8192]
    assert v["comm.inter_group_size"]["computed"] == 4 and v["comm.fc1_gather"]["computed"] == 0
    assert v["mha.per_segment_attention"]["computed"] > 0.05 and v["mha.concat_exact"]["computed"] < 1e-10
    assert v["runtime.script_output"]["computed"] == "Total Runtime: 0.18 seconds"
    assert v["runtime.estimate"]["computed"] > 10 * 0.18
    assert v["perf.comm_overhead"]["computed"] > 0.05
    assert 1 < v["perf.speedup"]["computed"] < 16 and 1 < v["perf.memory_reduction"]["computed"] < 16
    assert v["risk.memory_overflow"]["computed"] > 1


def test_the_stored_plan_is_the_case_study_verbatim():
    if not SHARED_PLAN_MD.exists():
        pytest.skip(f"{SHARED_PLAN_MD} is not beside this clone; the stored copy is checked where it is")
    assert PLAN_MD.read_bytes() == SHARED_PLAN_MD.read_bytes()


def test_claims_cover_every_section_of_the_plan():
    headings, fenced = [], False
    for line in PLAN_MD.read_text().splitlines():
        fenced ^= line.startswith("```")
        m = re.match(r"(#+) (.*)", line)
        if m and not fenced:
            headings.append((len(m.group(1)), m.group(2).strip()))
    leaves = {h for (lvl, h), nxt in zip(headings, headings[1:] + [(0, "")]) if nxt[0] <= lvl and lvl > 1}
    sections = {c.section for c in load_claims().claims}
    assert leaves - sections == set()


def test_claims_file_is_valid_and_checks_are_known():
    cf = load_claims()
    assert len(cf.claims) >= 80
    assert {c.check for c in cf.claims} <= set(CHECKS)
    assert cf.context["model"] == "helix-70b"


def test_verdicts_follow_the_computation_not_the_file(tmp_path):
    """Correct a wrong claim in a copy of the file: its verdict flips to holds."""
    raw = yaml.safe_load(CLAIMS_FILE.read_text())
    claim = next(c for c in raw["claims"] if c["id"] == "mlp.fc1.flops_per_gpu")
    claim["claimed"] = 2 * 1024 * 10000 * 8192 * 2048
    raw["claims"] = [claim]
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump(raw))
    r = run_cli("audit", "--claims", str(p), "--json", timeout=120)
    d = json.loads(r.stdout)
    assert [v["verdict"] for v in d["verdicts"]] == ["holds"]


def test_another_partition_changes_the_verdicts(tmp_path):
    raw = yaml.safe_load(CLAIMS_FILE.read_text())
    raw["context"].update(head_groups=8, dim_segments=2)
    raw["claims"] = [c for c in raw["claims"] if c["id"] in ("level2.segment1", "mha.qkv.output")]
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump(raw))
    from helixlib.audit.claims import audit
    got = {v.claim.id: (v.verdict, v.computed) for v in audit(load_claims(p))}
    assert got["level2.segment1"] == ("wrong", {"width": 256, "gpu_offset": 1})
    assert got["mha.qkv.output"] == ("wrong", [1024, 10000, 2, 256])


@pytest.mark.parametrize("compare,claimed,value,verdict", [
    ("equal", 100.0, 100.5, "holds"),
    ("equal", 100.0, 102.0, "wrong"),
    ("equal", [1, 2], [1, 2], "holds"),
    ("equal", {"a": [1]}, {"a": (1,)}, "holds"),
    ("at_most", 0.05, 0.04, "holds"),
    ("at_most", 0.05, 1.4, "wrong"),
    ("at_least", 2.0, 1.0, "wrong"),
    ("true", True, False, "wrong"),
    ("qualitative", None, 3.0, "unverifiable as stated"),
])
def test_judge(compare, claimed, value, verdict):
    c = Claim("x", "s", "q", "model", compare, claimed, explain="because")
    v = judge(c, Computed(value, "detail"))
    assert v.verdict == verdict
    assert ("because" in v.explanation) == (verdict != "holds")


@pytest.mark.parametrize("claims,message", [
    ("claims: [{id: a, section: s, quote: q, check: nope, claimed: 1}]", "claims[0] (a).check: is not a known check"),
    ("claims: [{id: a, section: s, quote: q, check: model}]", "claims[0] (a).claimed: is required for compare=equal"),
    ("claims: [{id: a, section: s, check: model, claimed: 1}]", "claims[0] (a).quote: is required"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, colour: red}]",
     "claims[0] (a).colour: is not a claim field"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, compare: roughly}]",
     "claims[0] (a).compare: must be one of"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, args: {field: hidden}},"
     " {id: a, section: s, quote: q, check: model, claimed: 1, args: {field: hidden}}]",
     "claims[1] (a).id: must be unique"),
    ("claims: 3", "claims: must be a mapping with a 'claims' list"),
    ("claims: []", "claims: lists no claims"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, args: {field: hidden}, tolerance: abc}]",
     "claims[0] (a).tolerance: must be a relative tolerance"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, args: {field: hidden}, tolerance: -1}]",
     "claims[0] (a).tolerance: must be a relative tolerance"),
    ("claims: [{id: [1, 2], section: s, quote: q, check: model, claimed: 1}]", "claims[0].id: must be a non-empty"),
    ("claims: [{id: a, section: s, quote: q, check: [model], claimed: 1}]", "claims[0] (a).check: must be a non-empty"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, args: {field: bogus, colour: red}}]",
     "claims[0] (a).args: do not fit check model"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1}]", "claims[0] (a).args: do not fit check model"),
    ("claims: [{id: a, section: s, quote: q, check: model, claimed: 1, args: [field]}]",
     "claims[0] (a).args: must be a mapping"),
])
def test_bad_claims_files(tmp_path, claims, message):
    p = tmp_path / "c.yaml"
    p.write_text(claims)
    with pytest.raises(HelixInputError) as e:
        load_claims(p)
    assert str(e.value).startswith(message)
    r = run_cli("audit", "--claims", str(p))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {e.value}"]


@pytest.mark.parametrize("check,args,message", [
    ("model", "{field: bogus}", "args.field: must be one of"),
    ("head_group", "{group: 99}", "args.group: must be an integer in 0..3"),
    ("shape", "{step: no_such_step}", "args: rank 0 runs no step 'no_such_step'"),
    ("shape", "{step: q_proj, rank: 99}", "args.rank: must be an integer in 0..15"),
    ("shape", "{step: q_proj, part: weight, index: 7}", "args.index: must be an integer in 0..1"),
])
def test_claims_about_what_does_not_exist_are_errors(tmp_path, check, args, message):
    """A claim on head group 99 (or an unknown field, step or rank) computes nothing: it is bad
    input at audit time, one line, never a verdict."""
    p = tmp_path / "c.yaml"
    p.write_text(f"claims: [{{id: a.1, section: s, quote: q, check: {check}, compare: qualitative, args: {args}}}]")
    r = run_cli("audit", "--claims", str(p))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr, r.stderr


def test_an_audit_that_selects_no_claim_is_an_error():
    r = run_cli("audit", "--only", "zzz")
    assert r.returncode == 2 and r.stderr.startswith("error: only: selects no claim") and "\n" not in r.stderr.strip()


def test_missing_claims_file():
    r = run_cli("audit", "--claims", "/nonexistent.yaml")
    assert r.returncode == 2 and "claims: file does not exist" in r.stderr


def test_deployment_summary():
    s = deployment_summary(load_claims().context)
    assert not s["fits_at_full_batch"] and s["memory_per_gpu_full_batch"] > s["device_memory"]
    assert s["memory_per_gpu"] <= s["device_memory"] and 1024 % s["micro_batch"] == 0
    assert s["forward_per_model_s"] == pytest.approx(87 * s["forward_per_layer_s"])
    assert s["best_helix_partition"] != "helix 4x4 reduce_scores"
    assert 0 < s["mfu"] < 1
