"""The estimator against published, measured GPU training runs it was never fitted to.

``data/results/published_validation.yaml`` holds one row per published quantity (per-layer forward
and backward times, iteration times, MFU and HFU, TFLOP/s per GPU), with the model, the hardware
preset and the parallel configuration the source states (``helixlib.estimate.step.Parallel``).
Each row is predicted with :func:`helixlib.estimate.step.estimate_step` and converted to the
source's own quantity with the source's own FLOP count (Korthikanti's Eq. 7 and 8, Narayanan's
Eq. 3), so nothing is compared across conventions.

Error = (predicted − published) / published; for MFU and HFU also the difference in points.
A row that leaves settings unstated lists the alternatives (``unstated``); the spread of the
prediction over them decides whether the row is **fully specified** (spread ≤ ``SPREAD``: it
counts in the headline figures) or **partly specified** (reported apart). Every end-to-end row was
run by its authors, so the estimate must say it fits in memory.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from helixlib.core import presets
from helixlib.core.presets import RESULTS_DIR
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.step import Parallel, StepEstimate, estimate_step
from helixlib.plan.model import ModelConfig

PUBLISHED = RESULTS_DIR / "published_validation.yaml"
SPREAD = 0.02  # a row is fully specified when its unstated settings move the prediction by at most this
POINTS = ("mfu", "hfu_korthikanti")  # quantities that are fractions of peak
GROUPS = {"per_layer_forward_s": "per layer", "per_layer_backward_s": "per layer", "iteration_s": "step",
          "tflops_per_gpu_narayanan": "step", "mfu": "utilisation", "hfu_korthikanti": "utilisation"}
#: the issue's goal: mean and max |error| per group (utilisation: points)
GOAL = {"per layer": (0.05, 0.10), "step": (0.05, 0.10), "utilisation": (0.03, 0.03)}


@dataclass(frozen=True)
class Row:
    id: str
    source: str
    source_ref: str
    hardware: str
    model: ModelConfig
    parallel: Parallel
    quantity: str
    value: float
    unstated: dict
    assumptions: str

    @property
    def group(self) -> str:
        return GROUPS[self.quantity]


def load_rows(path: str | Path = PUBLISHED) -> tuple[dict, list[Row]]:
    """(the file's header: sources, quantities, what was left out; its rows)."""
    raw = presets.read_yaml("published_validation", path)
    rows = []
    for r in raw["rows"]:
        m = dict(r["model"])
        model = ModelConfig(m.pop("name"), batch=1, **m)
        rows.append(Row(r["id"], r["source"], r["source_ref"], r["hardware"], model, Parallel(**r["parallel"]),
                        r["quantity"], float(r["value"]), dict(r.get("unstated") or {}), r.get("assumptions", "")))
    return {k: v for k, v in raw.items() if k != "rows"}, rows


@functools.lru_cache(maxsize=512)
def _estimate(hardware: str, model: ModelConfig, par: Parallel) -> StepEstimate:
    return estimate_step(model, par, load_cluster(hardware))


def quantity(est: StepEstimate, name: str) -> float:
    """A published quantity, computed from an estimate the way its source computes it."""
    m, par = est.model, est.parallel
    B, s, h, L, V = par.batch, m.seq_len, m.hidden, m.layers, m.vocab or 0
    gpus = par.world_size
    if name == "per_layer_forward_s":
        return float(est.block.forward_s)
    if name == "per_layer_backward_s":
        return float(est.block.backward_s)
    if name == "iteration_s":
        return est.time_s
    if name == "mfu":
        return est.mfu
    if name == "hfu_korthikanti":  # Eq. 8, against the A100's 312 TFLOP/s (the paper's peak)
        return 72 * B * L * s * h * h * (1 + s / (3 * h) + V / (12 * h * L)) / (est.time_s * gpus * 312e12)
    if name == "tflops_per_gpu_narayanan":  # Eq. 3
        return 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h)) / (est.time_s * gpus)
    raise KeyError(name)


def predict(row: Row, par: Parallel | None = None) -> tuple[float, StepEstimate]:
    est = _estimate(row.hardware, row.model, par or row.parallel)
    return quantity(est, row.quantity), est


def spread(row: Row) -> float:
    """max/min − 1 of the prediction over the row's unstated alternatives that are valid configurations."""
    if not row.unstated:
        return 0.0
    keys = list(row.unstated)
    values = []
    for combo in itertools.product(*(row.unstated[k] for k in keys)):
        try:
            values.append(predict(row, replace(row.parallel, **dict(zip(keys, combo))))[0])
        except ValueError:  # HelixInputError: not a valid configuration of this model
            continue
    return float(max(values) / min(values) - 1) if values else 0.0


def evaluate(rows: list[Row]) -> list[dict]:
    """Per row: published, predicted, relative error (and points for utilisation), memory verdict, spread."""
    out = []
    for r in rows:
        pred, est = predict(r)
        sp = spread(r)
        out.append({"id": r.id, "source": r.source, "group": r.group, "quantity": r.quantity, "hardware": r.hardware,
                    "gpus": r.parallel.world_size, "published": r.value, "predicted": pred,
                    "error": (pred - r.value) / r.value,
                    "points": (pred - r.value) * 100 if r.quantity in POINTS else None,
                    "fits": bool(est.memory.fits), "memory_bytes": float(est.memory.total),
                    "spread": sp, "specified": sp <= SPREAD, "assumptions": r.assumptions})
    return out


def summary(results: list[dict], specified_only: bool = True, hardware: str | None = None) -> dict[str, dict]:
    """Per group: rows, mean and max |error| (utilisation: in points), and whether the goal is met
    (rows of one ``hardware`` preset only, if given)."""
    out = {}
    for group, (goal_mean, goal_max) in GOAL.items():
        sel = [r for r in results if r["group"] == group and (r["specified"] or not specified_only)
               and hardware in (None, r["hardware"])]
        if not sel:
            continue
        e = np.abs([r["points"] / 100 if group == "utilisation" else r["error"] for r in sel])
        out[group] = {"rows": len(sel), "mean_abs": float(e.mean()), "max_abs": float(e.max()),
                      "goal_mean": goal_mean, "goal_max": goal_max,
                      "met": bool(e.mean() <= goal_mean and e.max() <= goal_max),
                      "sources": sorted({r["source"] for r in sel})}
    return out


def memory_agreement(results: list[dict]) -> dict:
    """Every published end-to-end run fitted its GPUs: how many our memory estimate says fit."""
    runs = {r["id"]: r["fits"] for r in results if r["group"] != "per layer"}
    return {"runs": len(runs), "fit": sum(runs.values()), "do_not_fit": sorted(k for k, v in runs.items() if not v)}
