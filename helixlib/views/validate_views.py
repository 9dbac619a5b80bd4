"""Tables and the predicted-against-measured plot of a validation run (notebook 04 §9,
``benchmarks/validate_cpu.py``). Every number comes from the results dictionary that
``helixlib.validation.validate.run_validation`` writes; these functions only arrange it.
"""

from __future__ import annotations

from helixlib.core.units import seconds
from helixlib.validation.validate import STEPS, error_rows, error_summary, ranking

ERROR_HEADER = ["configuration", "forward measured", "forward predicted", "error",
                "training measured", "training predicted", "error"]
SUMMARY_HEADER = ["configurations", "count", "forward mean |err|", "forward max |err|",
                  "training mean |err|", "training max |err|"]
RANKING_HEADER = ["family (same sizes and variants)", "Spearman rho", "measured order (fastest first)",
                  "pairs the prediction swaps (measured gap)"]
BYTES_HEADER = ["configuration", "ranks", "bytes per rank (Plan)", "bytes per rank (run)", "equal"]
SPLITS = {"calibration_configs": "calibration", "held_out": "held out", "drift": "calibration, again at the end"}


def error_table(rows: list[dict]) -> list[list]:
    """One row per configuration: measured and predicted seconds and the signed error, per step."""
    return [[r["label"]] + [v for s in STEPS for v in (seconds(r[f"{s}_measured_s"]), seconds(r[f"{s}_predicted_s"]),
                                                          f"{r[f'{s}_error']:+.1%}")] for r in rows]


def summary_table(results: dict) -> list[list]:
    """Mean and max |error| for each split of the run."""
    out = []
    for split, name in SPLITS.items():
        s = error_summary(error_rows(results, split))
        out.append([name, s["training"]["configs"]] + [f"{s[step][k]:.1%}" for step in STEPS
                                                        for k in ("mean_abs", "max_abs")])
    return out


def ranking_table(results: dict, step: str = "training") -> list[list]:
    """Per family of held-out configurations, does the prediction order the partitions as measured?"""
    rows = []
    for r in ranking(error_rows(results), step):
        swaps = "; ".join(f"{p['pair'][0]} / {p['pair'][1]} ({p['measured_gap']:.0%})" for p in r["swapped_pairs"])
        rows.append([r["family"], f"{r['spearman']:+.2f}", ", ".join(r["measured_order"]), swaps or "none"])
    return rows


def bytes_table(results: dict) -> list[list]:
    """Per configuration: the bytes the Plan says each rank's collectives move in one training
    step against the bytes the run's trace recorded (min–max over ranks)."""
    rows = []
    for split in SPLITS:
        for r in results[split]:
            plan, run = r["predicted"]["communicated_bytes"], r["measured"]["communicated_bytes"]
            span = lambda v: f"{min(v):,}" if min(v) == max(v) else f"{min(v):,} – {max(v):,}"
            rows.append([r["config"]["label"], len(run), span(plan), span(run), "yes" if plan == run else "NO"])
    return rows


def plot_validation(results: dict, ax=None):
    """Predicted against measured seconds per step, log–log, with the y = x line and ±15 % / ±30 % bands."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    markers = {"forward": "o", "training": "s"}
    colors = {"calibration_configs": "#d62728", "held_out": "#1f77b4", "drift": "#ff7f0e"}
    values = []
    for split, name in SPLITS.items():
        rows = error_rows(results, split)
        for step in STEPS:
            m = [r[f"{step}_measured_s"] for r in rows]
            p = [r[f"{step}_predicted_s"] for r in rows]
            values += m + p
            ax.scatter(m, p, marker=markers[step], facecolors="none" if split == "held_out" else colors[split],
                       edgecolors=colors[split], label=f"{name}, {step}", s=28)
    lo, hi = min(values) / 1.3, max(values) * 1.3
    x = np.geomspace(lo, hi, 50)
    ax.plot(x, x, "k-", lw=1)
    for band, style in ((0.15, "--"), (0.30, ":")):
        ax.plot(x, x * (1 + band), "k" + style, lw=0.8)
        ax.plot(x, x * (1 - band), "k" + style, lw=0.8, label=f"±{band:.0%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured seconds per step (16 ranks, gloo)")
    ax.set_ylabel("predicted seconds per step")
    ax.legend(fontsize=7)
    return ax


FIT_HEADER = ["collective", "p", "alpha", "bus bandwidth", "mean |err| of fit", "max |err| of fit"]


def fit_table(fits: list[dict]) -> list[list]:
    """One row per fitted (kind, group size), from ``AlphaBetaFit.to_dict()``: α, bus bandwidth
    and how well ``T = α + S·f/busbw`` fits the measured sizes."""
    return [[f["kind"], f["p"], seconds(f["alpha_s"]), f"{f['busbw'] / 1e6:.0f} MB/s",
             f"{f['mean_abs_rel_error']:.0%}", f"{f['max_abs_rel_error']:.0%}"] for f in fits]
