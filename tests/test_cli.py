"""The command line: readable output, one-line errors with exit code 2."""

import pytest
from helpers import run_cli


def cli(*args):
    return run_cli(*args)


def test_plan_table():
    r = cli("plan", "--model", "helix-70b", "--head-groups", "4", "--dim-segments", "4")
    assert r.returncode == 0, r.stderr
    assert "[1024, 10000, 4, 128]" in r.stdout and "scores_allreduce" in r.stdout
    assert "[ok] every_head_dim_owned_once" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["-n", "3"], "error: head_groups: must divide heads (16), got 3"),
    (["-m", "3"], "error: dim_segments: must divide head_dim (512), got 3"),
    (["-n", "0"], "error: head_groups: must be a positive integer, got 0"),
    (["-n", "-4"], "error: head_groups: must be a positive integer, got -4"),
    (["-m", "2.5"], "error: dim_segments: must be a positive integer, got '2.5'"),
    (["--seq-len", "0"], "error: seq_len: must be a positive integer, got 0"),
    (["--batch", "many"], "error: batch: must be a positive integer, got 'many'"),
    (["--world-size", "8"], "error: world_size: must equal head_groups x dim_segments = 4x4 = 16, got 8"),
    (["--model", "helix-9000"], "error: model: unknown preset"),
    (["--model", "/nonexistent/model.yaml"], "error: model: file does not exist"),
    (["--qk-mode", "flash"], "error: qk_mode: must be one of reduce_scores, gather_qk, segment_local, got 'flash'"),
    (["--output", "scatter"], "error: output: must be one of allreduce, concat, got 'scatter'"),
    (["--dtype", "fp4"], "error: dtype: must be one of"),
    (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = cli("plan", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr


def test_unknown_command():
    r = cli("frobnicate")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
