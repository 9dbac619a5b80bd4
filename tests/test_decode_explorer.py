"""The decode explorer: set control values from Python, assert on what it computed."""

import contextlib
import io

import pytest

from helixlib.estimate.decode_estimate import DecodeConfig, decode_estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.plan.model import load_model
from helixlib.views import decode_explorer
from helixlib.views.decode_explorer import DecodeExplorer, explore_decode, partition_options, summary_html


@pytest.fixture
def explorer(monkeypatch):
    calls = []
    real = decode_explorer.explore_decode
    monkeypatch.setattr(decode_explorer, "explore_decode", lambda **kw: calls.append(kw) or real(**kw))
    with contextlib.redirect_stdout(io.StringIO()):
        ex = DecodeExplorer()
    ex.calls = calls
    return ex


def set_value(ex, name, value):
    with contextlib.redirect_stdout(io.StringIO()):
        ex.controls[name].value = value


def test_explore_equals_the_estimate_and_ranks_every_strategy():
    r = explore_decode()
    want = decode_estimate(load_model("helix-paper-llama-405b"), load_cluster("gb200-nvl72"),
                           DecodeConfig("helix-kv", 8, 8, 2 ** 20, 8, hop_b=True))
    assert r.estimate.ttl_s == pytest.approx(want.ttl_s, rel=1e-12)
    labels = [row["label"] for row in r.ranking]
    assert [row["current"] for row in r.ranking].count(True) == 1
    assert any(lab.startswith("TP ") for lab in labels) and any(lab.startswith("helix ") for lab in labels)
    assert r.ranking[0]["current"]  # at 64 GPUs, S = 1M, B = 8: KV shards win
    ttls = [row["ttl_s"] for row in r.ranking if row["fits"]]
    assert ttls == sorted(ttls)
    assert "largest batch 40" in summary_html(r)


def test_each_change_computes_once(explorer):
    assert len(explorer.calls) == 1
    set_value(explorer, "batch", 16)
    assert len(explorer.calls) == 2 and explorer.result.estimate.config.batch == 16
    set_value(explorer, "hop_b", False)
    assert explorer.result.estimate.ttl_s == explorer.result.estimate.costs["ttl_s"]


def test_strategy_and_gpus_offer_the_splits_the_model_admits(explorer):
    set_value(explorer, "strategy", "megatron-tp")
    opts = [k for _, k in explorer.controls["partition"].options]
    assert all(second == 1 and split * pp * dp == 64 for split, second, pp, dp in opts)
    assert explorer.result.estimate.config.strategy == "megatron-tp"
    set_value(explorer, "gpus", 16)
    assert explorer.result.estimate.config.gpus == 16
    kv = partition_options("helix-paper-llama-405b", "helix-kv", 64)
    assert all(split <= 8 for _, (split, *_rest) in kv)  # TP_A <= K = 8


def test_model_drives_context_and_batch_and_bad_values_give_a_message(explorer):
    set_value(explorer, "model", "helix-roofline-dense")
    c = explorer.controls
    assert (c["context"].value, c["batch"].value) == (2 ** 20, 8)
    set_value(explorer, "context", 0)
    assert explorer.result.error == "context: must be a positive integer, got 0"
    set_value(explorer, "context", 4096)
    assert explorer.result.error is None and explorer.result.estimate.config.context == 4096
    set_value(explorer, "hardware", "dgx-a100")
    assert "has no matmul peak" in explorer.result.error


def test_snapshot_is_static_html_of_the_starting_point(explorer):
    from IPython.core.interactiveshell import InteractiveShell

    shown = []
    InteractiveShell.instance().display_pub.publish = lambda data, **kw: shown.append(data)
    explorer.show_snapshot()
    html = "".join(d.get("text/html", "") for d in shown)
    assert "Snapshot of the explorer" in html and explorer.result.ranking[0]["label"] in html
    assert "VBox(" not in html
