"""Hardware presets: the datasheet figures, per-direction links, a strict loader, and the α–β model."""

import dataclasses

import pytest
import yaml
from helpers import run_cli

from helixlib import HelixInputError
from helixlib.core.presets import HARDWARE_DIR
from helixlib.estimate.alphabeta import collective_time
from helixlib.estimate.hardware import MeasuredCollective, hardware_names, load_cluster, load_device
from helixlib.estimate.roofline import gemm_efficiency
from helixlib.plan import bus_factor


def test_presets_and_their_sources():
    assert set(hardware_names("device")) >= {"a100-sxm4-80gb", "h100-sxm5-80gb", "h200-sxm-141gb"}
    assert set(hardware_names("cluster")) >= {"dgx-a100", "dgx-h100", "dgx-h200"}
    for name in ("dgx-a100", "dgx-h100", "dgx-h200"):  # not a local cpu-local.yaml that calibrate wrote
        c = load_cluster(name)
        assert c.source and c.device.source and c.gpus_per_node == 8


def test_datasheet_figures_dense_and_per_direction():
    a100, h100, h200 = (load_cluster(n) for n in ("dgx-a100", "dgx-h100", "dgx-h200"))
    assert a100.device.peak_flops("bf16") == 312e12 and h100.device.peak_flops("bf16") == 989e12
    assert h200.device.memory_bandwidth == 4.8e12 and h200.device.memory_bytes > 140 * 2**30
    # NVLink3 "600 GB/s" and NVLink4 "900 GB/s" are both directions: stored per direction
    assert a100.intra_node.bandwidth == 300e9 and h100.intra_node.bandwidth == 450e9
    # nccl-tests issue #212: ~370 GB/s ring busbw, 8 x H100
    assert h100.intra_node.bus_bandwidth == pytest.approx(370e9, rel=0.01)
    assert h100.inter_node.bandwidth == 50e9  # 400 Gb/s NDR


def _write(tmp_path, raw, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _cluster_raw():
    return yaml.safe_load(open(HARDWARE_DIR / "dgx-a100.yaml"))


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(nvlink="fast"), "nvlink: is not a field here"),
    (lambda r: r.pop("gpus_per_node"), "gpus_per_node: is required"),
    (lambda r: r["intra_node"].update(bandwidth="fast"), "intra_node.bandwidth: must be a number > 0"),
    (lambda r: r["intra_node"].update(efficiency=1.5), "intra_node.efficiency: must be a number > 0 and <= 1"),
    (lambda r: r.update(kind="device"), "kind: must be cluster"),
    (lambda r: r.update(source=""), "source: must say where the figures come from"),
    (lambda r: r.update(device="tpu-v9"), "hardware: unknown device preset"),
    (lambda r: r.update(collectives={"all_reduce": {1: {"alpha_s": 1e-5, "busbw": 1e9}}}),
     "collectives.all_reduce.1: group size must be at least 2"),
    (lambda r: r.update(collectives={"broadcast": {2: {"alpha_s": 1e-5, "busbw": 1e9}}}),
     "collectives.broadcast: is not a field here"),
])
def test_bad_cluster_preset_is_one_error_naming_the_field(tmp_path, change, message):
    raw = _cluster_raw()
    change(raw)
    with pytest.raises(HelixInputError) as err:
        load_cluster(_write(tmp_path, raw))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_inline_device_and_bad_device_field(tmp_path):
    raw = _cluster_raw()
    raw["device"] = yaml.safe_load(open(HARDWARE_DIR / "a100-sxm4-80gb.yaml"))
    assert load_cluster(_write(tmp_path, raw)).device.name == "a100-sxm4-80gb"
    raw["device"]["matmul_flops"]["int4"] = 1e15
    with pytest.raises(HelixInputError, match=r"^device.matmul_flops.int4: is not a field here"):
        load_cluster(_write(tmp_path, raw))


def test_cli_refuses_a_bad_preset_in_one_line(tmp_path):
    raw = _cluster_raw()
    raw["intra_node"]["bandwidth"] = -1
    r = run_cli("estimate", "--hardware", str(_write(tmp_path, raw)))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["error: intra_node.bandwidth: must be a number > 0, got -1"]


def test_ring_inside_a_node_is_alpha_plus_s_f_over_busbw():
    c = load_cluster("dgx-a100")
    S, p = 1e9, 4
    t = collective_time(c, "all_reduce", S, p, 1)
    alpha = 8.4e-6 + 2 * (p - 1) * 3.4e-6
    assert t.time_s == pytest.approx(alpha + S * bus_factor("all_reduce", p) / c.intra_node.bus_bandwidth)


def test_a_ring_across_nodes_pays_the_network_on_2_nodes_minus_1_steps_and_shares_the_nics():
    """4 ranks on 2 nodes (no published curve): Simple protocol at 1 GB; the two ranks of a node
    drive two NICs side by side, so the bus bandwidth is min(NVLink, 2 x NIC)."""
    c = load_cluster("dgx-a100")
    S, p, k = 1e9, 4, 2
    t = collective_time(c, "all_reduce", S, p, k)
    steps, net = 2 * (p - 1), 2 * (k - 1)
    assert t.alpha_s == pytest.approx(8.4e-6 + (steps - net) * 3.4e-6 + net * 14e-6)
    busbw = min(c.intra_node.bus_bandwidth, 2 * c.inter_node.bus_bandwidth)
    assert t.bandwidth_s == pytest.approx(S * bus_factor("all_reduce", p) / busbw)
    assert t.time_s > collective_time(c, "all_reduce", S, p, 1).time_s
    one_per_node = collective_time(c, "all_reduce", S, 4, 4)  # data parallelism with t = 8: one NIC each
    assert one_per_node.bandwidth_s == pytest.approx(S * 1.5 / c.inter_node.bus_bandwidth)


def test_a_group_of_one_costs_nothing_and_arrays_work():
    c = load_cluster("dgx-h100")
    assert collective_time(c, "all_gather", 1e9, 1, 1).time_s == 0
    t = collective_time(c, "all_gather", [1e6, 1e9], [2, 8], [1, 1]).time_s
    assert t.shape == (2,) and t[1] > t[0] > 0


def test_measured_collectives_replace_the_topology_model():
    c = load_cluster("dgx-a100")
    fit = MeasuredCollective(alpha_s=1e-3, busbw=1e9)
    m = dataclasses.replace(c, collectives={("all_reduce", 4): fit})
    assert collective_time(m, "all_reduce", 1e9, 4, 1).time_s == pytest.approx(1e-3 + 1e9 * 1.5 / 1e9)
    assert collective_time(m, "all_reduce", 1e9, 8, 1).time_s == collective_time(c, "all_reduce", 1e9, 8, 1).time_s


def test_measured_matmul_table_replaces_the_parametric_efficiency():
    dev = dataclasses.replace(load_device("a100-sxm4-80gb"), gemm={})  # no fitted curve: the parametric knobs
    measured = dataclasses.replace(dev, matmul_measured={"bf16": ((64, 64, 64, 31.2e12), (4096, 4096, 4096, 280.8e12))})
    assert gemm_efficiency(measured, "bf16", 64, 64, 64) == pytest.approx(0.1)  # a measured shape: its own figure
    assert 0.1 < gemm_efficiency(measured, "bf16", 100, 50, 70) < 0.11  # mostly the nearer point's
    assert 0.85 < gemm_efficiency(measured, "bf16", 8192, 8192, 2048) <= 0.9
    assert gemm_efficiency(dev, "bf16", 8192, 8192, 8192) == pytest.approx(0.8 * (8192 / 8224) ** 3)


def test_the_fitted_gemm_curve_is_the_device_default():
    """A100's curve (fitted to Azure's cuBLASLt table, max = MAMF): big Megatron GEMMs near 77 %, a head dim
    of 32 a third of that; a batched GEMM's batch counts as rows."""
    dev = load_device("a100-sxm4-80gb")
    g = dev.gemm["bf16"]
    assert gemm_efficiency(dev, "bf16", 8192, 6144, 2304) == pytest.approx(g.efficiency(8192, 6144, 2304))
    assert 0.75 < gemm_efficiency(dev, "bf16", 8192, 6144, 2304) < 0.8
    assert gemm_efficiency(dev, "bf16", 8192, 32, 8192) < 0.3
    assert gemm_efficiency(dev, "bf16", 2048, 96, 2048, batch=32) == pytest.approx(g.efficiency(65536, 96, 2048))


def test_blackwell_presets_dense_per_direction_and_one_nvlink_domain():
    """GB200 NVL72: 72 GPUs in one NVLink domain, NVLink 5 at 900 GB/s each way; dense (not sparse) peaks."""
    nvl, dgx = load_cluster("gb200-nvl72"), load_cluster("dgx-b200")
    assert nvl.gpus_per_node == 72 and nvl.nodes_spanned(range(72)) == 1 and dgx.gpus_per_node == 8
    assert nvl.intra_node.bandwidth == dgx.intra_node.bandwidth == 900e9
    gb, b = nvl.device, dgx.device
    assert (gb.peak_flops("fp8"), gb.peak_flops("bf16"), b.peak_flops("fp8"), b.peak_flops("bf16")) == (
        5e15, 2.5e15, 4.5e15, 2.25e15)
    assert gb.memory_bandwidth == b.memory_bandwidth == 8e12 and gb.memory_bytes == 186e9 and b.memory_bytes == 180e9
    for d in (gb, b, load_device("h100-sxm5-80gb"), load_device("h200-sxm-141gb")):
        assert d.source and d.peak_flops("fp8") == pytest.approx(2 * d.peak_flops("bf16"), rel=1e-3)  # twice bf16
    # NVLS entries (NCCL's model) apply from 18 ranks on, where a ring's LL latency 6.6 + 1.2(p-1) us exceeds 25 us
    ring16 = collective_time(nvl, "all_reduce", 1e5, 16, 1)
    assert ring16.alpha_s == pytest.approx(6.6e-6 + 30 * 0.6e-6)
    assert collective_time(nvl, "all_reduce", 1e5, 64, 1).alpha_s == 25e-6 < 6.6e-6 + 126 * 0.6e-6
