import pytest

from helixlib import HelixInputError, load_model, preset_names
from helixlib.plan.model import ModelConfig, layers_for_params


def test_presets_load():
    names = preset_names()
    assert {"helix-70b", "helix-tiny", "gpt3-175b"} <= set(names)
    for name in names:
        m = load_model(name)
        assert m.name == name and m.hidden % m.heads == 0


def test_helix_70b_is_the_plans_model(big):
    assert (big.hidden, big.heads, big.mlp_hidden, big.seq_len, big.batch, big.dtype) == (
        8192, 16, 32768, 10000, 1024, "bf16")
    assert big.head_dim == 512


def test_helix_70b_depth_is_derived_from_70b():
    m = load_model("helix-70b")
    # 4D^2 + 2DF + biases: computed independently here
    D, F = 8192, 32768
    per_block = 4 * D * D + 2 * D * F + (4 * D + F + D) + 4 * D
    assert m.params_per_block == per_block == 805_412_864
    assert layers_for_params(70e9, D, F) == round(70e9 / per_block) == 87 == m.layers
    assert 69.5e9 < m.params < 70.5e9


def test_gpt3_matches_its_paper_size():
    m = load_model("gpt3-175b")
    # blocks only; the 0.6B embedding makes up the rest of "175B"
    assert 173e9 < m.params < 175e9


def test_tiny_admits_every_factorisation_of_16(tiny):
    assert tiny.heads == 16 and tiny.head_dim % 16 == 0


@pytest.mark.parametrize("field,value,rule", [
    ("hidden", 0, "positive integer"),
    ("heads", -4, "positive integer"),
    ("seq_len", 2.5, "positive integer"),
    ("batch", "ten", "positive integer"),
    ("heads", 7, "must divide hidden"),
    ("dtype", "fp4", "must be one of"),
])
def test_bad_model_fields_name_field_and_rule(field, value, rule):
    with pytest.raises(HelixInputError) as e:
        load_model("helix-tiny", **{field: value})
    assert e.value.field == field and rule in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_preset():
    with pytest.raises(HelixInputError, match="unknown preset"):
        load_model("helix-9000")


def test_preset_file_with_unknown_field(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("name: x\nhidden: 64\nheads: 4\nmlp_hidden: 256\nseq_len: 8\nbatch: 1\nlayers: 1\nwidth: 3\n")
    with pytest.raises(HelixInputError, match="width: is not a model field"):
        load_model(p)


def test_replace_revalidates(tiny):
    assert tiny.replace(seq_len=64).seq_len == 64
    with pytest.raises(HelixInputError):
        tiny.replace(heads=0)


def test_modelconfig_accepts_integral_floats():
    assert ModelConfig("x", 64.0, 4, 256, 8, 1, 1).hidden == 64


def test_grouped_query_fields_default_to_multi_head():
    m = load_model("helix-70b")
    assert (m.kv_heads, m.head_dim_qk, m.head_dim_v, m.mlp, m.vocab, m.dropout) == (16, 512, 512, "gelu", None, 0.0)
    assert m.params_per_block == 4 * 8192 ** 2 + 4 * 8192 + 2 * 8192 * 32768 + 32768 + 8192 + 4 * 8192
    half = m.replace(hidden=4096, mlp_hidden=16384)
    assert half.head_dim == 256  # a derived head dim follows D/H
    gqa = m.replace(kv_heads=4, mlp="swiglu")
    D, F = 8192, 32768
    attn = D * (16 * 512 + 2 * 4 * 512) + 16 * 512 * D + (16 * 512 + 2 * 4 * 512) + D
    assert gqa.params_per_block == attn + 3 * D * F + 2 * F + D + 4 * D


@pytest.mark.parametrize("change,message", [
    ({"kv_heads": 3}, "kv_heads: must divide heads (16)"),
    ({"mlp": "relu"}, "mlp: must be one of gelu, swiglu"),
    ({"dropout": 1.5}, "dropout: must be a probability in [0, 1)"),
    ({"vocab": 0}, "vocab: must be a positive integer"),
])
def test_bad_new_fields_are_one_line_errors(change, message):
    with pytest.raises(HelixInputError) as e:
        load_model("helix-tiny").replace(**change)
    assert str(e.value).startswith(message)


def test_the_design_space_and_the_estimator_refuse_what_they_do_not_model_yet():
    """The Plan models grouped-query attention, other head dims and SwiGLU (tests/test_kv_plan.py);
    the design space and the estimator still price multi-head attention with a GELU MLP only."""
    from helixlib import Partition, build_plan
    from helixlib.estimate.hardware import load_cluster
    from helixlib.estimate.workload import program_from_plan
    gqa = load_model("helix-tiny").replace(kv_heads=4)
    plan = build_plan(gqa, Partition(4, 4))
    with pytest.raises(HelixInputError, match="kv_heads"):
        program_from_plan(plan, 0, load_cluster("dgx-a100"))
    with pytest.raises(HelixInputError, match="kv_shards"):
        program_from_plan(build_plan(load_model("helix-tiny"), Partition(4, kv_shards=4)), 0, load_cluster("dgx-a100"))
