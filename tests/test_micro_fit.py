"""GEMM efficiency by shape: the device presets hold what ``fit_gemm`` gets from the published tables."""

import numpy as np
import pytest

from helixlib.estimate.hardware import load_device
from helixlib.validation.micro_fit import fit_gemm, load_gemm_table


@pytest.mark.parametrize("device,table,mean,worst", [
    ("a100-sxm4-80gb", "a100-sxm4-80gb", 0.043, 0.111), ("h100-sxm5-80gb", "h100-sxm5-80gb", 0.064, 0.302),
    ("h200-sxm-141gb", "h100-sxm5-80gb", 0.064, 0.302),
])
def test_the_presets_gemm_curve_is_the_fit_to_its_table(device, table, mean, worst):
    dev = load_device(device)
    stored = dev.gemm["bf16"]
    t = load_gemm_table(table)
    fit = fit_gemm(t, dev.peak_flops("bf16"), stored.table, stored.source)
    assert fit.curve == stored  # refitting gives the stored parameters
    assert dev.gemm["fp16"] == stored
    assert fit.curve.max_efficiency == pytest.approx(t.max_achievable_tflops * 1e12 / dev.peak_flops("bf16"), abs=1e-6)
    assert (fit.mean_abs_error, fit.max_abs_error) == pytest.approx((mean, worst), abs=0.001)  # BENCHMARKS.md
    assert np.isfinite(fit.errors).all() and len(fit.errors) == len(t.tflops) == {"a100-sxm4-80gb": 8}.get(table, 144)
