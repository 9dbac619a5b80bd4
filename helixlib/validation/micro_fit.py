"""Fits of the estimator's kernel models to published micro-level measurements (never to
end-to-end runs): GEMM efficiency by shape (``helixlib.estimate.kernels.GemmCurve``) from a table
of GEMM timings, and the comparison of the collective model with the published sweeps.

``fit_gemm`` is deterministic (nested grid search, then two refinements around the best point),
so a test can refit and compare with the parameters stored in the device preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helixlib.core import presets
from helixlib.core.presets import HARDWARE_DIR
from helixlib.estimate.kernels import GemmCurve


@dataclass(frozen=True)
class GemmTable:
    """Published GEMM timings of one device and dtype: shapes (batch folded into M) and TFLOP/s."""

    device: str
    dtype: str
    M: np.ndarray
    K: np.ndarray
    N: np.ndarray
    tflops: np.ndarray
    max_achievable_tflops: float
    source: str

    @property
    def seconds(self) -> np.ndarray:
        return 2 * self.M * self.K * self.N / (self.tflops * 1e12)


def load_gemm_table(name: str) -> GemmTable:
    """``data/hardware/gemm/<name>.yaml`` (or a path)."""
    path = Path(name) if Path(name).suffix else HARDWARE_DIR / "gemm" / f"{name}.yaml"
    raw = presets.read_yaml("gemm_table", path)
    rows = np.asarray(raw["rows"], dtype=float)  # batch, M, N, K, TFLOP/s
    b, M, N, K, tf = rows.T
    return GemmTable(raw["device"], raw["dtype"], b * M, K, N, tf, float(raw["max_achievable"]["tflops"]),
                     raw["source"])


@dataclass(frozen=True)
class GemmFit:
    curve: GemmCurve
    errors: np.ndarray  # (predicted − measured) / measured, per table row

    @property
    def mean_abs_error(self) -> float:
        return float(np.abs(self.errors).mean())

    @property
    def max_abs_error(self) -> float:
        return float(np.abs(self.errors).max())


def _loss(table: GemmTable, peak: float, emax: float, h, g, t0):
    """Mean squared log error for arrays of (h, g, t0) (broadcast against each other)."""
    h, g, t0 = (np.asarray(v, dtype=float)[..., None] for v in (h, g, t0))
    f = lambda x: 1.0 / (1.0 + (h / x) ** g)
    pred = t0 + 2 * table.M * table.K * table.N / (peak * emax * f(table.M) * f(table.K) * f(table.N))
    return (np.log(pred / table.seconds) ** 2).mean(axis=-1)


def fit_gemm(table: GemmTable, peak: float, table_name: str, source: str) -> GemmFit:
    """``max_efficiency`` = the table's maximum achievable TFLOP/s over ``peak``; half_dim, exponent and
    launch_s by least squares on log-time (see ``helixlib.estimate.kernels``)."""
    emax = table.max_achievable_tflops * 1e12 / peak
    h = np.geomspace(1.0, 2000.0, 80)
    g = np.linspace(0.3, 4.0, 38)
    t0 = np.linspace(0.0, 20e-6, 41)
    for _ in range(3):
        H, Gm, T0 = np.meshgrid(h, g, t0, indexing="ij")
        loss = _loss(table, peak, emax, H, Gm, T0)
        i, j, k = np.unravel_index(np.argmin(loss), loss.shape)
        best = H[i, j, k], Gm[i, j, k], T0[i, j, k]
        h = np.geomspace(best[0] / 1.3, best[0] * 1.3, 41)
        g = np.linspace(max(best[1] - 0.15, 0.05), best[1] + 0.15, 31)
        t0 = np.linspace(max(best[2] - 1e-6, 0.0), best[2] + 1e-6, 41)
    curve = GemmCurve(round(emax, 6), round(float(best[0]), 3), round(float(best[1]), 4), round(float(best[2]), 10),
                      table_name, source)
    pred = curve.time(peak, table.M, table.K, table.N)
    return GemmFit(curve, (pred - table.seconds) / table.seconds)
