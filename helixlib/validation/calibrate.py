"""``python -m helixlib calibrate``: measure this machine the way the distributed run uses it
and write a cluster preset the estimator loads (``--hardware FILE``).

The run puts ``G`` single-threaded ranks on the machine's cores, so every figure is measured
inside ``G`` concurrently running ranks (``helixlib.validation.microbench``), not in one idle process:

* ``device.matmul_measured``: FLOP/s of each (M, K, N) of a table, per dtype — one rank's
  share while every rank multiplies; ``matmul_flops`` is the best of them;
* ``device.elementwise_measured``: B/s of the block's element-wise ops (LayerNorm, softmax,
  GELU, residual add) by size — in cache and streaming from memory differ many times over;
  ``memory_bandwidth`` and ``vector_flops`` are the best reached (bounds the table never
  exceeds); ``launch_overhead_s`` the cost of one recorded op;
* ``collectives``: gloo all-reduce, all-gather and reduce-scatter over groups of ``p`` ranks
  (every divisor of G from 2; all groups at once), fitted to ``T = α + S·f/busbw`` by least
  squares on relative error, with the fit's error reported; the measured points themselves are
  written as curves (``collective_curves``), which the estimator interpolates by message size
  (``helixlib.estimate.collectives``), the fit answering below the smallest size.

The preset is one "node" of G "GPUs" (``gpus_per_node = G``); its ``source`` says when, where
and how it was measured. Fields the run cannot measure say so (flash attention, buffers).
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import statistics
from dataclasses import dataclass

import numpy as np

from helixlib.core.errors import HelixInputError
from helixlib.core.presets import LOCAL_CLUSTER_FILE
from helixlib.estimate.hardware import cluster_from_dict
from helixlib.plan import bus_factor
from helixlib.plan.model import ModelConfig
from helixlib.runtime.spec import MAX_LOCAL_RANKS
from helixlib.validation.microbench import Suite, microbench_rank

DEFAULT_OUT = LOCAL_CLUSTER_FILE
MAX_RANKS = MAX_LOCAL_RANKS  # the local launcher's limit
_DIMS = (4, 16, 64, 256, 1024)


def suite_for(ranks: int, dtypes: tuple[str, ...], quick: bool) -> Suite:
    """The measurement plan: a full table (about a minute per dtype on 2 cores) or a quick one."""
    groups = tuple(p for p in range(2, ranks + 1) if ranks % p == 0)
    if quick:
        return Suite(dtypes, gemm_shapes=tuple((M, K, N) for M in (64, 1024) for K in (16, 256) for N in (16, 256)),
                     elementwise_elements=(2 ** 16, 2 ** 18), row=256, collective_bytes=(2 ** 12, 2 ** 20),
                     group_sizes=groups, repeats=2, step_s=0.02)
    shapes = tuple((M, K, N) for M in (64, 256, 1024, 4096) for K in _DIMS for N in _DIMS if M * K * N <= 2 ** 30)
    return Suite(dtypes, gemm_shapes=shapes, elementwise_elements=(2 ** 16, 2 ** 18, 2 ** 20, 2 ** 22), row=256,
                 collective_bytes=tuple(4 ** k for k in range(6, 13)), group_sizes=groups)


# ---- fits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphaBetaFit:
    """``T = alpha_s + S·f/busbw`` for one kind and group size, and how well it fits the points."""

    kind: str
    p: int
    alpha_s: float
    busbw: float  # B/s
    sizes: tuple[int, ...]  # S, bytes
    seconds: tuple[float, ...]  # measured

    def predict(self, nbytes):
        return self.alpha_s + np.asarray(nbytes, dtype=float) * float(bus_factor(self.kind, self.p)) / self.busbw

    @property
    def relative_errors(self) -> np.ndarray:
        t = np.asarray(self.seconds)
        return (self.predict(self.sizes) - t) / t

    def to_dict(self) -> dict:
        e = np.abs(self.relative_errors)
        return {"kind": self.kind, "p": self.p, "alpha_s": self.alpha_s, "busbw": self.busbw,
                "sizes": list(self.sizes), "seconds": list(self.seconds),
                "mean_abs_rel_error": float(e.mean()), "max_abs_rel_error": float(e.max())}


def fit_alpha_beta(kind: str, p: int, sizes, seconds) -> AlphaBetaFit:
    """Least squares on relative error, ``min Σ ((α + x/busbw − T)/T)²`` with ``x = S·f``,
    α ≥ 0 and busbw > 0. A negative α refits the slope alone; a slope ≤ 0 (no size dependence
    within the noise: only in ``--quick`` tables) fits α alone and sets busbw so that the
    largest size adds 1 % of α (the most the data can say)."""
    S, T = np.asarray(sizes, dtype=float), np.asarray(seconds, dtype=float)
    if len(S) < 2:
        raise HelixInputError("collective_bytes", "need at least two sizes to fit alpha and beta", len(S))
    x = S * float(bus_factor(kind, p))
    (alpha, slope), *_ = np.linalg.lstsq(np.stack([1 / T, x / T], axis=1), np.ones_like(T), rcond=None)
    if alpha < 0:
        alpha, slope = 0.0, float((x / T).sum() / (x * x / T / T).sum())
    if slope <= 0:
        alpha = float((1 / T).sum() / (1 / T / T).sum())
        slope = 0.01 * alpha / x.max()
    return AlphaBetaFit(kind, p, float(alpha), float(1 / slope), tuple(int(s) for s in S), tuple(map(float, T)))


def collective_fits(rows: list[dict]) -> list[AlphaBetaFit]:
    keys = sorted({(r["kind"], r["p"]) for r in rows})
    fits = []
    for kind, p in keys:
        pts = sorted((r["bytes"], r["seconds"]) for r in rows if (r["kind"], r["p"]) == (kind, p))
        fits.append(fit_alpha_beta(kind, p, *zip(*pts)))
    return fits


def gemm_table(rows: list[dict], dtype: str) -> list[list[float]]:
    """``[M, K, N, FLOP/s]`` rows of one dtype."""
    return [[r["M"], r["K"], r["N"], r["flops"] / r["seconds"]] for r in rows if r["dtype"] == dtype]


def elementwise_table(rows: list[dict], dtype: str) -> dict[str, list[list[float]]]:
    """``{kind: [[bytes, B/s], ...]}`` of one dtype."""
    out: dict[str, list] = {}
    for r in rows:
        if r["dtype"] == dtype:
            out.setdefault(r["kind"], []).append([r["bytes"], r["bytes"] / r["seconds"]])
    return out


# ---- the preset ----------------------------------------------------------------------------


def machine_line() -> str:
    """Cores, CPU model, load average and date (the measurement's context)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{os.cpu_count()} cores, {cpu}, load average {load}, {when}"


@dataclass
class Calibration:
    """What one calibration run measured, its fits, and the preset built from them."""

    suite: Suite
    measurements: dict  # rank 0's rows (helixlib.validation.microbench)
    fits: list[AlphaBetaFit]
    machine: str
    preset: dict  # a cluster preset, as YAML would hold it

    def to_dict(self) -> dict:
        return {"machine": self.machine, "measurements": self.measurements,
                "collective_fits": [f.to_dict() for f in self.fits], "preset": self.preset}


def build_preset(meas: dict, fits: list[AlphaBetaFit], suite: Suite, machine: str, name: str) -> dict:
    """A strict cluster preset (``helixlib.estimate.hardware.cluster_from_dict``) from the measurements."""
    import psutil

    G = meas["world_size"]
    gemms = {dt: gemm_table(meas["gemm"], dt) for dt in suite.dtypes}
    vector = {dt: elementwise_table(meas["elementwise"], dt) for dt in suite.dtypes}
    ew = meas["elementwise"]
    how = (f"measured by `python -m helixlib calibrate` inside {G} concurrent ranks "
           f"({meas['threads_per_rank']} thread each, gloo on 127.0.0.1) on {machine}")
    device = {
        "kind": "device", "name": f"cpu-rank-of-{G}",
        "memory_bytes": float(psutil.virtual_memory().total / G),
        "reserved_bytes": float(meas["start_rss_bytes"]),
        "matmul_flops": {dt: max(r[3] for r in rows) for dt, rows in gemms.items()},
        "vector_flops": max(r["flops"] / r["seconds"] for r in ew),
        "memory_bandwidth": max(r["bytes"] / r["seconds"] for r in ew),
        "matmul_efficiency": 1.0, "matmul_half_dim": 0.0, "memory_efficiency": 1.0,
        "flash_efficiency": 1.0, "launch_overhead_s": float(meas["overhead_s"]),
        "matmul_measured": gemms, "elementwise_measured": vector,
        "source": how + "; memory_bytes = RAM / ranks, reserved_bytes = a rank's RSS before measuring; "
                        "flash_efficiency not measured (no fused attention kernel in this run)",
    }
    ar = [f for f in fits if f.kind == "all_reduce"] or fits
    steps = np.array([2.0 * (f.p - 1) for f in ar])
    hop = float((np.array([f.alpha_s for f in ar]) * steps).sum() / (steps * steps).sum())
    link = {"bandwidth": statistics.median(f.busbw for f in ar), "efficiency": 1.0, "hop_latency_s": hop}
    collectives: dict[str, dict] = {}
    curves = []
    for f in fits:
        collectives.setdefault(f.kind, {})[f.p] = {"alpha_s": f.alpha_s, "busbw": f.busbw}
        curves.append({"id": f"gloo-{f.kind}-{f.p}", "kind": f.kind, "ranks": f.p, "nodes": 1, "algorithm": "gloo",
                       "source": how, "points": [[float(s), t * 1e6] for s, t in zip(f.sizes, f.seconds)]})
    return {
        "kind": "cluster", "name": name, "device": device, "gpus_per_node": G, "base_latency_s": 0.0,
        "intra_node": link, "inter_node": dict(link), "communicator_bytes": 0.0, "collectives": collectives,
        "collective_curves": curves,
        "source": how + "; collectives fitted per kind and group size (T = alpha + S*f/busbw, least squares on "
                        "relative error); intra_node (used only for kinds and sizes not measured): median all-reduce "
                        "busbw, hop latency fitted to alpha over 2(p-1) ring steps; communicator_bytes not measured",
    }


def calibrate(ranks: int = 16, dtypes: tuple[str, ...] = ("fp32", "fp64"), quick: bool = False,
              name: str = "cpu-local", log=None) -> Calibration:
    """Launch ``ranks`` CPU ranks, measure (``helixlib.validation.microbench``), fit, build the preset."""
    from helixlib.plan.partition import Partition
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    suite = suite_for(ranks, dtypes, quick)
    machine = machine_line()
    # the launcher needs a model and a partition of `ranks`; the ranks only read the world size
    probe = ModelConfig("calibration", hidden=ranks, heads=ranks, mlp_hidden=ranks, seq_len=1, batch=1, layers=1,
                        dtype=dtypes[0])
    meas = launch_local(RunSpec(probe, Partition(ranks, 1), verify=False, collective_timeout_s=300),
                        rank_fn=functools.partial(microbench_rank, suite=suite), log=log,
                        timeout_s=1800)
    fits = collective_fits(meas["collectives"])
    preset = build_preset(meas, fits, suite, machine, name)
    cluster_from_dict(preset)  # what we write must load
    return Calibration(suite, meas, fits, machine, preset)
