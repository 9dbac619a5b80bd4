"""Kernel efficiency by shape, fitted to published kernel timings (never to end-to-end runs).

A GEMM ``[M,K]·[K,N]`` (a batched one with its batch folded into ``M``) takes::

    t = launch_s + FLOPs / (peak · max_efficiency · f(M) · f(K) · f(N)),   f(x) = 1 / (1 + (half_dim / x)^exponent)

``max_efficiency`` is the best a search over shapes reached on the device (the "maximum achievable
matmul FLOPS" of a sweep); ``half_dim`` (the dim at which a GEMM runs at half speed for that
dim), ``exponent`` (how sharp the fall is) and ``launch_s`` (a call's fixed cost) are fitted to a
published table of GEMM timings by ``helixlib.validation.micro_fit.fit_gemm`` (least squares on
log-time). The fit and its error on the table are in BENCHMARKS.md; the table is in
``data/hardware/gemm/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.estimate import fields

GEMM_FIELDS = ("max_efficiency", "half_dim", "exponent", "launch_s", "table", "source")


@dataclass(frozen=True)
class GemmCurve:
    max_efficiency: float
    half_dim: float
    exponent: float
    launch_s: float
    table: str  # the data file the fit was made on (relative to data/hardware)
    source: str

    def shape_factor(self, x):
        x = np.asarray(x, dtype=float)
        return 1.0 / (1.0 + (self.half_dim / x) ** self.exponent)

    def efficiency(self, M, K, N):
        """Fraction of the dense peak a GEMM of this shape reaches (launch not included)."""
        return self.max_efficiency * self.shape_factor(M) * self.shape_factor(K) * self.shape_factor(N)

    def time(self, peak: float, M, K, N):
        """Seconds of one GEMM (2·M·K·N FLOPs) on its own."""
        M, K, N = (np.asarray(v, dtype=float) for v in (M, K, N))
        return self.launch_s + 2 * M * K * N / (peak * self.efficiency(M, K, N))


def gemm_from_dict(raw: dict, where: str) -> GemmCurve:
    raw = fields.mapping(where, raw, GEMM_FIELDS)
    num = lambda f, **kw: fields.number(f"{where}.{f}", raw[f], **kw)
    return GemmCurve(num("max_efficiency", hi=1.0), num("half_dim", lo_open=False), num("exponent"),
                     num("launch_s", lo_open=False), fields.text(f"{where}.table", raw["table"]),
                     fields.source(f"{where}.", raw))
