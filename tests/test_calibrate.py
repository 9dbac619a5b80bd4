"""Calibration: the α–β fit, the element-wise bandwidth table, the preset it writes, and the CLI.

The end-to-end run measures (4 ranks, ``--quick``) but asserts only what must hold whatever the
machine's speed: the preset loads, every figure is positive, every fitted group is there."""

import numpy as np
import pytest
import yaml
from helpers import run_cli

from helixlib import HelixInputError, Partition, build_plan, load_model
from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import cluster_from_dict, load_cluster
from helixlib.estimate.roofline import elementwise_bandwidth
from helixlib.plan import bus_factor
from helixlib.validation.calibrate import build_preset, collective_fits, fit_alpha_beta, suite_for


@pytest.mark.parametrize("kind,p", [("all_reduce", 4), ("all_gather", 16), ("reduce_scatter", 2)])
def test_fit_recovers_alpha_and_bus_bandwidth_from_exact_points(kind, p):
    sizes = [4 ** k for k in range(6, 13)]
    t = [2e-3 + S * float(bus_factor(kind, p)) / 3e8 for S in sizes]
    fit = fit_alpha_beta(kind, p, sizes, t)
    assert fit.alpha_s == pytest.approx(2e-3, rel=1e-9) and fit.busbw == pytest.approx(3e8, rel=1e-9)
    assert np.abs(fit.relative_errors).max() < 1e-9


def test_fit_keeps_alpha_non_negative_and_reports_its_error():
    sizes = [1e3, 1e5, 1e7]
    # a concave curve whose unconstrained line would cross zero below the smallest size
    t = [1e-7, 2e-4, 1.5e-2]
    fit = fit_alpha_beta("all_reduce", 2, sizes, t)
    assert fit.alpha_s == 0.0 and fit.busbw > 0
    assert fit.to_dict()["max_abs_rel_error"] > 0.1  # the fit says it does not fit
    flat = fit_alpha_beta("all_reduce", 2, [1e3, 1e4], [5e-3, 4e-3])  # no size dependence in the noise
    assert flat.alpha_s == pytest.approx(4.4e-3, rel=0.05) and flat.predict(1e4) < 1.02 * flat.alpha_s
    with pytest.raises(HelixInputError, match="collective_bytes"):
        fit_alpha_beta("all_reduce", 2, [1e3], [1e-3])


def test_fits_group_rows_by_kind_and_group_size():
    rows = [{"kind": k, "p": p, "bytes": S, "seconds": 1e-3 + S / 1e9}
            for k in ("all_reduce", "all_gather") for p in (2, 4) for S in (1e4, 1e6)]
    fits = collective_fits(rows)
    assert [(f.kind, f.p) for f in fits] == [("all_gather", 2), ("all_gather", 4), ("all_reduce", 2), ("all_reduce", 4)]


def test_elementwise_bandwidth_interpolates_log_log_and_is_flat_beyond():
    dev = load_cluster("dgx-a100").device
    assert elementwise_bandwidth(dev, "fp32", "gelu", 1e6) == dev.memory_bandwidth * dev.memory_efficiency
    import dataclasses

    dev = dataclasses.replace(dev, elementwise_measured={"fp32": {"gelu": ((1e4, 1e9), (1e6, 1e11))}})
    assert elementwise_bandwidth(dev, "fp32", "gelu", 1e5) == pytest.approx(1e10)
    assert elementwise_bandwidth(dev, "fp32", "gelu", 1e2) == pytest.approx(1e9)
    assert elementwise_bandwidth(dev, "fp32", "gelu", 1e9) == pytest.approx(1e11)
    assert elementwise_bandwidth(dev, "fp32", "softmax", 1e5) == dev.memory_bandwidth * dev.memory_efficiency


def _measurements(G=16):
    gemm = [{"dtype": "fp32", "M": M, "K": K, "N": 64, "batch": 1, "flops": 2 * M * K * 64, "seconds": M * K * 1e-9}
            for M in (64, 1024) for K in (64, 1024)]
    ew = [{"dtype": "fp32", "kind": k, "elements": n, "flops": 5 * n, "bytes": 8 * n, "seconds": 8 * n / 2e9}
          for k in ("layernorm", "softmax", "gelu", "add") for n in (2 ** 16, 2 ** 20)]
    coll = [{"kind": "all_reduce", "p": p, "bytes": S, "seconds": 1e-3 * p + S * 2 * (p - 1) / p / 1e8}
            for p in (2, 4, 8, 16) for S in (4 ** 6, 4 ** 10)]
    return {"world_size": G, "threads_per_rank": 1, "gemm": gemm, "elementwise": ew, "collectives": coll,
            "overhead_s": 5e-5, "start_rss_bytes": 3e8}


def test_preset_from_measurements_loads_and_drives_the_estimate():
    meas = _measurements()
    fits = collective_fits(meas["collectives"])
    raw = build_preset(meas, fits, suite_for(16, ("fp32",), True), "test machine", "cpu-test")
    cpu = cluster_from_dict(raw)
    assert cpu.gpus_per_node == 16 and "calibrate" in cpu.source
    assert cpu.device.peak_flops("fp32") == max(g["flops"] / g["seconds"] for g in meas["gemm"])
    assert cpu.device.memory_bandwidth == pytest.approx(2e9) and cpu.device.launch_overhead_s == 5e-5
    assert cpu.collectives[("all_reduce", 4)].alpha_s == pytest.approx(4e-3)
    plan = build_plan(load_model("helix-small"), Partition(4, 4))
    e = estimate(plan, cpu, search_micro_batch=False)
    scores = next(r for r in e.collective_rows() if r["name"] == "scores_allreduce")
    assert scores["time_s"] == pytest.approx(4e-3 + scores["bytes"] * 1.5 / 1e8)
    gelu = next(r for r in e.op_rows() if r["name"] == "gelu")
    assert gelu["memory_s"] == pytest.approx(gelu["bytes"] / 2e9)


def cli(*args):
    return run_cli("calibrate", *args)


@pytest.mark.parametrize("args,line", [
    (["--ranks", "1"], "error: ranks: must be an integer >= 2, got 1"),
    (["--ranks", "four"], "error: ranks: must be an integer >= 2, got 'four'"),
    (["--ranks", "65"], "error: ranks: must be at most 64, got 65"),
    (["--dtypes", "fp32,int4"], "error: dtypes: must be a comma-separated list of"),
    (["--out", "preset.json"], "error: out: must be a .yaml file path, got 'preset.json'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, line):
    r = cli(*args, "--out", str(tmp_path / "x.yaml")) if "--out" not in args else cli(*args)
    assert r.returncode == 2 and r.stderr.strip().startswith(line), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.yaml").exists()


def test_quick_calibration_writes_a_preset_that_loads(tmp_path):
    out = tmp_path / "cpu-quick.yaml"
    r = cli("--ranks", "4", "--dtypes", "fp64", "--quick", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "[calibrate]" in r.stderr  # progress goes to stderr
    cpu = load_cluster(out)
    assert cpu.name == "cpu-quick" and cpu.gpus_per_node == 4
    assert set(cpu.collectives) == {(k, p) for k in ("all_reduce", "all_gather", "reduce_scatter") for p in (2, 4)}
    assert all(c.alpha_s >= 0 and c.busbw > 0 for c in cpu.collectives.values())
    dev = cpu.device
    assert dev.peak_flops("fp64") > 0 and len(dev.matmul_measured["fp64"]) == 8
    assert set(dev.elementwise_measured["fp64"]) == {"layernorm", "softmax", "gelu", "add"}
    assert out.read_text().startswith("# Measured by python -m helixlib calibrate --ranks 4")
    assert yaml.safe_load(out.read_text())["kind"] == "cluster"
