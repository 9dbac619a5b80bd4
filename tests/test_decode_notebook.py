"""The numbers notebook 08 shows that are not asserted elsewhere: the log-sum-exp demo, the exercises'
hidden answers, and the notebook's shape (a parameters cell, hidden answer cells, the real 16-rank run)."""

import json

import pytest

from helixlib.estimate.decode import decode_costs
from helixlib.estimate.decode_study import exercise_answers
from helixlib.estimate.hardware import load_cluster
from helixlib.plan.model import load_model
from helixlib.views.decode_views import lse_combine_demo
from helixlib.workbook.notebooks import NOTEBOOK_DIR

NB = NOTEBOOK_DIR / "08_decoding.ipynb"


@pytest.mark.parametrize("context,shards,block", [(1000, 4, 32), (4096, 8, 16), (33, 5, 32), (7, 1, 1)])
def test_the_lse_combine_is_exact_and_the_plain_mean_is_not(context, shards, block):
    d = lse_combine_demo(context, 16, shards, block)
    # float64: the combine reorders a sum of S terms; relative rounding stays ~S·2^-53 << 1e-12
    assert d.combined_error < 1e-12 and d.empty_shard_error < 1e-12
    if context > block * (shards - 1) and shards > 1:  # every shard owns something: the shards differ
        assert d.naive_error > 1e-4
    assert d.exchanged_elements == shards * 17 and d.partial_score_elements == context


def test_exercise_answers():
    a = exercise_answers()
    m, c = load_model("helix-paper-llama-405b"), load_cluster("gb200-nvl72")
    S = 2 ** 20
    assert a["tp64_kv_copies"] == 8  # 64 GPUs over K = 8 KV heads
    assert a["tp64_kv_bytes_per_sequence"] == m.layers * S * 1 * 256 * 1  # one KV head, K and V of 128, fp8
    assert a["head_dim_scores_bytes"] == 8 * 16 * S * 2  # [B, H/n, S] in bf16, n = 8
    assert a["helix_kv_all_to_all_bytes"] == 8 * 16 * (128 * 2 + 4)  # [B, H/TP_A, d_v] bf16 + fp32 LSE
    assert a["bytes_ratio"] == pytest.approx(S * 2 / (128 * 2 + 4))
    top = a["helix_kv_8x8_max_batch"]
    assert top == 40
    fits = decode_costs(m, c, "helix-kv", 8, 8, S, [top, top + 1])["fits"]
    assert fits.tolist() == [True, False]
    assert a["helix_kv_8x8_ttl_at_max_batch_s"] == pytest.approx(
        float(decode_costs(m, c, "helix-kv", 8, 8, S, top)["ttl_s"][0]), rel=1e-12)


def test_notebook_shape():
    cells = json.loads(NB.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    answers = [c for c in code if "answer" in c["metadata"].get("tags", [])]
    assert len(answers) == 3
    assert all(c["metadata"]["jupyter"]["source_hidden"] and "exercises_study." in "".join(c["source"])
               for c in answers)
    text = "".join("".join(c["source"]) for c in cells)
    for needed in ("published_rooflines(", "paper_study(", "lse_combine_demo(", "DecodeExplorer(", "plot_pareto(",
                   "launch_local(", "decode_step_rows("):
        assert needed in text
