"""Bad input, as a careful and a hostile user types it (issue 15's review): every case below runs
the command line in a fresh interpreter and must exit 2 with exactly one line on stderr that names
the field and the rule, print no traceback and nothing on stdout, and write no file — not beside
its inputs, not in the working folder, not in TMPDIR."""

import os
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import ALIAS_BOMB, run_cli

from helixlib.core.presets import HARDWARE_DIR, LOCAL_CLUSTER_FILE, MODELS_DIR


def _tiny(**changes) -> str:
    raw = yaml.safe_load((MODELS_DIR / "helix-tiny.yaml").read_text()) | changes
    return yaml.safe_dump({k: v for k, v in raw.items() if v is not None})


def _cluster(link: dict | None = None, **changes) -> str:
    raw = yaml.safe_load((HARDWARE_DIR / "dgx-a100.yaml").read_text()) | changes
    raw["intra_node"] = raw["intra_node"] | (link or {})
    return yaml.safe_dump(raw)


def _claim(check: str, args: str, extra: str = "") -> str:
    return f"claims: [{{id: a.1, section: s, quote: q, check: {check}, compare: qualitative, args: {args}{extra}}}]"


#: file name -> content (bytes or text; None: a folder), created in the test's folder
FILES = {
    "malformed.yaml": "name: x\nhidden: [1, 2\n",
    "python_tag.yaml": "!!python/object/apply:os.system ['echo pwned']\n",
    "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
    "bomb.yaml": ALIAS_BOMB,
    "list.yaml": "- 1\n- 2\n",
    "empty.yaml": "",
    "folder.yaml": None,
    "a_file": "not a folder\n",
    "model_unknown_field.yaml": _tiny(colour="red"),
    "model_missing_field.yaml": _tiny(hidden=None),
    "model_heads.yaml": _tiny(heads=7),
    "model_negative.yaml": _tiny(seq_len=-5),
    "model_dtype.yaml": _tiny(dtype="int4"),
    "model_huge.yaml": _tiny(seq_len=10**29),
    "model_wide.yaml": _tiny(hidden=65536, heads=64, mlp_hidden=262144),
    "hw_tiny_bw.yaml": _cluster({"bandwidth": 1e-300}),
    "hw_negative_bw.yaml": _cluster({"bandwidth": -1}),
    "hw_word_bw.yaml": _cluster({"bandwidth": "fast"}),
    "hw_nan_bw.yaml": _cluster({"bandwidth": ".nan"}).replace("'.nan'", ".nan"),
    "hw_inf_latency.yaml": _cluster(base_latency_s=1e300),
    "hw_efficiency.yaml": _cluster({"efficiency": 1.5}),
    "hw_unknown.yaml": _cluster(nvlink="fast"),
    "hw_device_kind.yaml": (HARDWARE_DIR / "a100-sxm4-80gb.yaml").read_text(),
    "claims_empty.yaml": "claims: []",
    "claims_scalar.yaml": "claims: 3",
    "claims_tolerance_word.yaml": _claim("model", "{field: hidden}", ", tolerance: abc"),
    "claims_tolerance_negative.yaml": _claim("model", "{field: hidden}", ", tolerance: -1"),
    "claims_id_list.yaml": "claims: [{id: [1, 2], section: s, quote: q, check: model, claimed: 1}]",
    "claims_check_list.yaml": "claims: [{id: a, section: s, quote: q, check: [model], claimed: 1}]",
    "claims_bogus_field.yaml": _claim("model", "{field: bogus}"),
    "claims_unknown_arg.yaml": _claim("model", "{field: hidden, colour: red}"),
    "claims_unknown_step.yaml": _claim("shape", "{step: no_such_step}"),
    "claims_rank_99.yaml": _claim("shape", "{step: q_proj, rank: 99}"),
    "claims_group_99.yaml": _claim("head_group", "{group: 99}"),
    "claims_unknown_check.yaml": _claim("nope", "{}"),
}
LONG = "x" * 5000

#: (id, command line with {tmp} for the test's folder, what the one line must contain)
CASES = [
    # the plan's options (every command shares them)
    ("n-zero", "plan -n 0", "head_groups: must be a positive integer"),
    ("n-negative", "plan -n -4", "head_groups: must be a positive integer"),
    ("n-not-dividing", "plan -n 3", "head_groups: must divide heads"),
    ("n-word", "plan -n abc", "head_groups: must be a positive integer"),
    ("n-fraction", "plan -n 2.5", "head_groups: must be a positive integer"),
    ("n-float-notation", "plan -n 1e3", "head_groups: must be a positive integer"),
    ("n-empty", "plan -n ''", "head_groups: must be a positive integer"),
    ("n-huge", "plan -n 99999999999999999999999", "world_size: must be at most 16384"),
    ("m-zero", "plan -m 0", "dim_segments: must be a positive integer"),
    ("m-not-dividing", "plan -m 3", "dim_segments: must divide head_dim"),
    ("m-negative", "plan -m -1", "dim_segments: must be a positive integer"),
    ("qk-mode", "plan --qk-mode flash", "qk_mode: must be one of"),
    ("output", "plan --output scatter", "output: must be one of"),
    ("dtype", "plan --dtype fp4", "dtype: must be one of"),
    ("dtype-empty", "plan --dtype ''", "dtype: must be one of"),
    ("causal", "plan --causal maybe", "argument --causal: invalid choice"),
    ("seq-zero", "plan --seq-len 0", "seq_len: must be a positive integer"),
    ("seq-negative", "plan --seq-len -1", "seq_len: must be a positive integer"),
    ("seq-float-notation", "plan --seq-len 1e29", "seq_len: must be a positive integer"),
    ("seq-10^29", "plan --seq-len 100000000000000000000000000000", "seq_len: must be at most 2147483647"),
    ("seq-tensor-too-big", "plan --seq-len 1000000000", "model: one block's largest tensor"),
    ("estimate-seq-tensor-too-big", "estimate --seq-len 1000000000", "model: one block's largest tensor"),
    ("batch-word", "plan --batch many", "batch: must be a positive integer"),
    ("batch-zero", "plan --batch 0", "batch: must be a positive integer"),
    ("batch-huge", "estimate --batch 100000000000000000000 --seq-len 1", "batch: must be at most"),
    ("layers-zero", "plan --layers 0", "layers: must be a positive integer"),
    ("layers-huge", "plan --layers 3000000000", "layers: must be at most"),
    ("world-size-mismatch", "plan --world-size 8", "world_size: must equal head_groups x dim_segments"),
    ("world-size-zero", "plan --world-size 0", "world_size: must be a positive integer"),
    ("world-size-word", "plan --world-size x", "world_size: must be a positive integer"),
    ("plan-too-many-ranks", "plan --model {tmp}/model_wide.yaml -n 64 -m 1024", "world_size: must be at most 16384"),
    ("unknown-option", "plan --frobnicate", "unrecognized arguments: --frobnicate"),
    ("stray-argument", "plan extra", "unrecognized arguments: extra"),
    ("no-command", "", "the following arguments are required: command"),
    ("unknown-command", "frobnicate", "argument command: invalid choice"),
    # model files
    ("model-unknown-preset", "plan --model helix-9000", "model: unknown preset"),
    ("model-missing-file", "plan --model /nonexistent/model.yaml", "model: file does not exist"),
    ("model-malformed", "plan --model {tmp}/malformed.yaml", "model: is not valid YAML"),
    ("model-python-tag", "plan --model {tmp}/python_tag.yaml", "model: is not valid YAML"),
    ("model-not-utf8", "plan --model {tmp}/latin1.yaml", "model: is not UTF-8 text"),
    ("model-alias-bomb", "plan --model {tmp}/bomb.yaml", "aliases (*name) are not allowed"),
    ("model-folder", "plan --model {tmp}/folder.yaml", "model: is a folder, not a YAML file"),
    ("model-long-name", f"plan --model {{tmp}}/{LONG}.yaml", "model: is longer than 1024 characters"),
    ("model-list", "plan --model {tmp}/list.yaml", "model: preset file must hold a mapping"),
    ("model-empty", "plan --model {tmp}/empty.yaml", "model: preset file must hold a mapping"),
    ("model-unknown-field", "plan --model {tmp}/model_unknown_field.yaml", "colour: is not a model field"),
    ("model-missing-field", "plan --model {tmp}/model_missing_field.yaml", "hidden: is required"),
    ("model-heads", "plan --model {tmp}/model_heads.yaml", "heads: must divide hidden"),
    ("model-negative", "plan --model {tmp}/model_negative.yaml", "seq_len: must be a positive integer"),
    ("model-dtype", "plan --model {tmp}/model_dtype.yaml", "dtype: must be one of"),
    ("model-huge", "plan --model {tmp}/model_huge.yaml", "seq_len: must be at most"),
    ("dag-model-bomb", "dag --model {tmp}/bomb.yaml --out {tmp}/dag", "aliases (*name) are not allowed"),
    ("run-model-python-tag", "run --model {tmp}/python_tag.yaml", "model: is not valid YAML"),
    # estimate: hardware files and its own options
    ("hw-unknown-preset", "estimate --hardware dgx-z900", "hardware: unknown cluster preset"),
    ("hw-device-not-cluster", "estimate --hardware a100-sxm4-80gb", "is a device preset, not a cluster"),
    ("hw-missing-file", "estimate --hardware /nonexistent/hw.yaml", "hardware: file does not exist"),
    ("hw-malformed", "estimate --hardware {tmp}/malformed.yaml", "hardware: is not valid YAML"),
    ("hw-python-tag", "estimate --hardware {tmp}/python_tag.yaml", "hardware: is not valid YAML"),
    ("hw-not-utf8", "estimate --hardware {tmp}/latin1.yaml", "hardware: is not UTF-8 text"),
    ("hw-alias-bomb", "estimate --hardware {tmp}/bomb.yaml", "aliases (*name) are not allowed"),
    ("hw-folder", "estimate --hardware {tmp}/folder.yaml", "hardware: is a folder"),
    ("hw-long-name", f"estimate --hardware {{tmp}}/{LONG}.yaml", "hardware: is longer than 1024 characters"),
    ("hw-list", "estimate --hardware {tmp}/list.yaml", "preset: must be a mapping of fields"),
    ("hw-tiny-bandwidth", "estimate --hardware {tmp}/hw_tiny_bw.yaml --json", "bandwidth: must be from 1e-09"),
    ("hw-negative-bandwidth", "estimate --hardware {tmp}/hw_negative_bw.yaml", "bandwidth: must be a number > 0"),
    ("hw-word-bandwidth", "estimate --hardware {tmp}/hw_word_bw.yaml", "bandwidth: must be a number > 0"),
    ("hw-nan-bandwidth", "estimate --hardware {tmp}/hw_nan_bw.yaml --json", "bandwidth: must be a number > 0"),
    ("hw-huge-latency", "estimate --hardware {tmp}/hw_inf_latency.yaml --json", "base_latency_s: must be 0 or from"),
    ("hw-efficiency", "estimate --hardware {tmp}/hw_efficiency.yaml", "intra_node.efficiency: must be a number > 0"),
    ("hw-unknown-field", "estimate --hardware {tmp}/hw_unknown.yaml", "nvlink: is not a field here"),
    ("hw-device-file", "estimate --hardware {tmp}/hw_device_kind.yaml", "kind: must be cluster"),
    ("micro-batch-zero", "estimate --micro-batch 0", "micro_batch: must be a positive integer"),
    ("micro-batch-word", "estimate --micro-batch x", "micro_batch: must be a positive integer"),
    ("flash-block-zero", "estimate --flash-block 0", "flash_block: must be a positive integer"),
    ("estimate-n", "estimate -n 3", "head_groups: must divide heads"),
    # dag: outputs checked before the work
    ("dag-out-is-a-file", "dag --out {tmp}/a_file", "out: is a file, not a folder"),
    ("dag-out-below-a-file", "dag --out {tmp}/a_file/dag", "out: "),
    ("dag-out-proc", "dag --out /proc/helix-dag", "out: cannot be written"),
    ("dag-formats", "dag --formats gif --out {tmp}/dag", "formats: must be a comma-separated list"),
    ("dag-rank", "dag --compact --rank 99 --out {tmp}/dag", "rank: must be an integer in 0..15"),
    ("dag-rank-negative", "dag --compact --rank -1 --out {tmp}/dag", "rank: must be an integer in 0..15"),
    ("dag-too-deep", "dag --layers 1000000 --out {tmp}/dag", "layers: layers x ranks must be at most"),
    # run: numbers, faults, devices, sizes, outputs (all before a process starts)
    ("timeout-nan", "run --collective-timeout nan", "collective_timeout: must be a number of seconds from 1"),
    ("timeout-inf", "run --collective-timeout inf", "collective_timeout: must be a number of seconds from 1"),
    ("timeout-minus-inf", "run --collective-timeout -inf", "collective_timeout: must be a number of seconds"),
    ("timeout-1e300", "run --collective-timeout 1e300", "collective_timeout: must be a number of seconds"),
    ("timeout-1e-9", "run --collective-timeout 1e-9", "collective_timeout: must be a number of seconds"),
    ("timeout-zero", "run --collective-timeout 0", "collective_timeout: must be a number of seconds"),
    ("timeout-negative", "run --collective-timeout -5", "collective_timeout: must be a number of seconds"),
    ("timeout-word", "run --collective-timeout soon", "collective_timeout: must be a number of seconds"),
    ("run-timeout-nan", "run --timeout nan", "timeout: must be a number of seconds"),
    ("run-timeout-zero", "run --timeout 0", "timeout: must be a number of seconds"),
    ("run-timeout-1e300", "run --timeout 1e300", "timeout: must be a number of seconds"),
    ("seed-negative", "run --seed -1", "seed: must be an integer >= 0"),
    ("seed-word", "run --seed x", "seed: must be an integer >= 0"),
    ("warmup-negative", "run --warmup -1", "warmup: must be an integer >= 0"),
    ("warmup-word", "run --warmup x", "warmup: must be an integer >= 0"),
    ("device", "run --device tpu", "device: must be one of auto, cpu, cuda"),
    ("start-method", "run --start-method thread", "start_method: must be one of forkserver, fork, spawn"),
    ("fault-shape", "run --inject-fault 5:x", "inject_fault: must be RANK:COLLECTIVE:raise|hang|crash"),
    ("fault-colons", "run --inject-fault ::", "inject_fault: must be an integer >= 0"),
    ("fault-kind", "run --inject-fault 5:scores_allreduce:explode", "fault.kind: must be one of"),
    ("fault-negative-rank", "run --inject-fault -1:scores_allreduce:raise", "inject_fault: must be an integer >= 0"),
    ("fault-word-rank", "run --inject-fault x:scores_allreduce:raise", "inject_fault: must be an integer >= 0"),
    ("fault-rank-99", "run --inject-fault 99:scores_allreduce:raise", "fault.rank: must be a rank of the run, 0..15"),
    ("fault-unknown-collective", "run --inject-fault 0:no_such_collective:raise", "fault.at: rank 0 calls no such"),
    ("fault-backward-without-backward", "run --inject-fault 0:scores_allreduce.backward:raise",
     "fault.at: rank 0 calls no such collective (forward only)"),
    ("fault-not-on-this-rank", "run -n 16 -m 1 --inject-fault 0:scores_allreduce:raise", "fault.at: rank 0 calls"),
    ("run-too-many-ranks", "run -n 16 -m 8", "world_size: the local launcher starts at most 64 processes"),
    ("run-memory", "run --seq-len 100000000", "memory: the run needs at least"),
    ("run-save-folder", "run --save {tmp}", "save: is a folder, not a file path"),
    ("run-save-proc", "run --save /proc/helix-run.json", "save: cannot be written"),
    ("run-save-below-a-file", "run --save {tmp}/a_file/run.json", "save: "),
    ("run-cuda-without-cuda", "run --device cuda", "device: cuda requested but this machine has no usable CUDA"),
    # audit
    ("audit-only-nothing", "audit --only zzz", "only: selects no claim"),
    ("claims-missing", "audit --claims /nonexistent.yaml", "claims: file does not exist"),
    ("claims-folder", "audit --claims {tmp}/folder.yaml", "claims: is a folder"),
    ("claims-malformed", "audit --claims {tmp}/malformed.yaml", "claims: is not valid YAML"),
    ("claims-python-tag", "audit --claims {tmp}/python_tag.yaml", "claims: is not valid YAML"),
    ("claims-not-utf8", "audit --claims {tmp}/latin1.yaml", "claims: is not UTF-8 text"),
    ("claims-alias-bomb", "audit --claims {tmp}/bomb.yaml", "aliases (*name) are not allowed"),
    ("claims-long-name", f"audit --claims {{tmp}}/{LONG}.yaml", "claims: is longer than 1024 characters"),
    ("claims-empty-file", "audit --claims {tmp}/empty.yaml", "claims: must be a mapping with a 'claims' list"),
    ("claims-empty-list", "audit --claims {tmp}/claims_empty.yaml", "claims: lists no claims"),
    ("claims-scalar", "audit --claims {tmp}/claims_scalar.yaml", "claims: must be a mapping with a 'claims' list"),
    ("claims-tolerance-word", "audit --claims {tmp}/claims_tolerance_word.yaml", "tolerance: must be a relative"),
    ("claims-tolerance-negative", "audit --claims {tmp}/claims_tolerance_negative.yaml", "tolerance: must be"),
    ("claims-id-list", "audit --claims {tmp}/claims_id_list.yaml", "claims[0].id: must be a non-empty"),
    ("claims-check-list", "audit --claims {tmp}/claims_check_list.yaml", "check: must be a non-empty"),
    ("claims-bogus-field", "audit --claims {tmp}/claims_bogus_field.yaml", "args.field: must be one of"),
    ("claims-unknown-arg", "audit --claims {tmp}/claims_unknown_arg.yaml", "args: do not fit check model"),
    ("claims-unknown-step", "audit --claims {tmp}/claims_unknown_step.yaml", "rank 0 runs no step 'no_such_step'"),
    ("claims-rank-99", "audit --claims {tmp}/claims_rank_99.yaml", "args.rank: must be an integer in 0..15"),
    ("claims-group-99", "audit --claims {tmp}/claims_group_99.yaml", "args.group: must be an integer in 0..3"),
    ("claims-unknown-check", "audit --claims {tmp}/claims_unknown_check.yaml", "check: is not a known check"),
    # calibrate: checked before minutes of measuring
    ("calibrate-ranks-one", "calibrate --ranks 1 --out {tmp}/c.yaml", "ranks: must be an integer >= 2"),
    ("calibrate-ranks-many", "calibrate --ranks 999 --out {tmp}/c.yaml", "ranks: must be at most 64"),
    ("calibrate-ranks-word", "calibrate --ranks x --out {tmp}/c.yaml", "ranks: must be an integer >= 2"),
    ("calibrate-dtypes", "calibrate --dtypes int8 --out {tmp}/c.yaml", "dtypes: must be a comma-separated list"),
    ("calibrate-dtypes-empty", "calibrate --dtypes , --out {tmp}/c.yaml", "dtypes: must be a comma-separated list"),
    ("calibrate-out-folder", "calibrate --out {tmp}", "out: must be a .yaml file path"),
    ("calibrate-out-suffix", "calibrate --out {tmp}/c.txt", "out: must be a .yaml file path"),
    ("calibrate-out-proc", "calibrate --out /proc/helix.yaml", "out: cannot be written"),
    ("calibrate-out-below-a-file", "calibrate --out {tmp}/a_file/c.yaml", "out: "),
]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workspace(tmp_path):
    for name, content in FILES.items():
        path = tmp_path / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for sub in ("cwd", "tmpdir"):
        (tmp_path / sub).mkdir()
    return tmp_path


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workspace, args, expected):
    before = _files(workspace)
    calibrated = LOCAL_CLUSTER_FILE.stat().st_mtime_ns if LOCAL_CLUSTER_FILE.exists() else None
    argv = [a.replace("{tmp}", str(workspace)) for a in shlex.split(args)]
    env = {**os.environ, "TMPDIR": str(workspace / "tmpdir")}
    r = run_cli(*argv, timeout=120, cwd=workspace / "cwd", env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert _files(workspace) == before  # nothing written beside the inputs, in the cwd or in TMPDIR
    assert (LOCAL_CLUSTER_FILE.stat().st_mtime_ns if LOCAL_CLUSTER_FILE.exists() else None) == calibrated
