"""The Megatron block as trained: its activation memory is Korthikanti et al.'s, its collectives are
Megatron's, and its variants (dropout, sequence parallelism, selective recompute, flash) do what they say."""

import numpy as np
import pytest

from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.megatron import Block, activation_bytes_korthikanti, megatron_program
from helixlib.estimate.memory import stored_bytes
from helixlib.estimate.strategies import Shapes
from helixlib.estimate.timing import program_timing

A100 = load_cluster("dgx-a100")
S22 = Shapes(4, 2048, 6144, 64, 4 * 6144, 8)  # Korthikanti et al.'s 22B layer on one DGX A100


@pytest.mark.parametrize("sp", [False, True])
@pytest.mark.parametrize("selective", [False, True])
def test_what_backward_keeps_is_korthikantis_formula(sp, selective):
    """Eq. (2) and its variants: s·b·h·(10 + 24/t) + 5·a·s²·b/t bytes (34/t with SP; no 5as²b/t selective)."""
    prog = megatron_program(S22, 8, 2, Block(sp=sp, dropout=0.1))
    assert stored_bytes(prog, selective=selective) == pytest.approx(activation_bytes_korthikanti(S22, 8, sp, selective))


def test_dropout_adds_masks_and_kernels_only_when_training_with_dropout():
    plain = megatron_program(S22, 8, 2, Block())
    drop = megatron_program(S22, 8, 2, Block(dropout=0.1))
    assert "attention_dropout" in {o.name for o in drop.ops} - {o.name for o in plain.ops}
    assert sum(o.bytes for o in drop.ops) > sum(o.bytes for o in plain.ops)
    assert sum(o.flops for o in drop.ops if o.kind == "matmul") == sum(o.flops for o in plain.ops if o.kind == "matmul")


def test_the_collectives_are_megatrons():
    tp = megatron_program(S22, 8, 2, Block())
    sp = megatron_program(S22, 8, 2, Block(sp=True))
    kinds = lambda p, phase: [c.kind for c in (p.forward_comms if phase == "forward" else p.backward_comms)]
    assert kinds(tp, "forward") == ["all_reduce"] * 2 and kinds(tp, "backward") == ["all_reduce"] * 2
    assert kinds(sp, "forward") == ["all_gather", "reduce_scatter"] * 2
    assert sorted(kinds(sp, "backward")) == ["all_gather"] * 4 + ["reduce_scatter"] * 2
    full = 4 * 2048 * 6144 * 2
    assert all(c.bytes == full and c.p == 8 and c.nodes == 1 for c in tp.comms + sp.comms)


def test_selective_recompute_reruns_the_attention_core_and_full_the_block():
    prog = megatron_program(S22, 8, 2, Block(dropout=0.1))
    t = {r: program_timing(prog, A100, "fp16", True, r) for r in ("none", "selective", "full")}
    core = sum(float(o.forward.time_s) for o in t["none"].ops if o.op.selective)
    assert {o.op.name for o in t["none"].ops if o.op.selective} == {"scores", "softmax", "attention_dropout", "attn_v"}
    assert float(t["selective"].compute_s - t["none"].compute_s) == pytest.approx(core)
    fwd = sum(float(o.forward.time_s) for o in t["none"].ops)
    assert float(t["full"].compute_s - t["none"].compute_s) == pytest.approx(fwd)
    assert float(t["full"].forward_s) == float(t["none"].forward_s)  # recomputation is backward's


def test_flash_fuses_the_core_and_skips_the_causal_half():
    plain = megatron_program(S22, 8, 2, Block(dropout=0.1))
    fused = megatron_program(S22, 8, 2, Block(dropout=0.1, flash=True, causal=True))
    assert {"scores", "softmax", "attention_dropout", "attn_v"}.isdisjoint(o.name for o in fused.ops)
    flash = fused.op("flash_attention")
    assert flash.flops == (plain.op("scores").flops + plain.op("attn_v").flops) / 2 and flash.causal
    assert stored_bytes(fused) < stored_bytes(plain, selective=True) + 1e9
    assert np.isclose(float(stored_bytes(fused)) - float(stored_bytes(plain, selective=True)),
                      float(fused.sizes["lse"]) + float(fused.sizes["ctx_heads"]))


def test_a_22b_layer_on_a100_is_what_the_parts_add_up_to():
    """Forward = ops + exposed collectives; no SP: both forward all-reduces block."""
    t = program_timing(megatron_program(S22, 8, 2, Block(dropout=0.1)), A100, "fp16", True, "none")
    ops = sum(float(o.forward.time_s) for o in t.ops)
    comm = sum(float(c.time_s) for c in t.comms if c.run == "forward")
    assert float(t.forward_s) == pytest.approx(ops + comm)
    assert 0.2 < comm / float(t.forward_s) < 0.3  # two 100 MB all-reduces over 8 A100s: about a quarter
