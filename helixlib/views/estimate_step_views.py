"""Tables, text and plots of training-step estimates and of their validation against published
runs (the CLI's ``estimate --strategy`` report and notebook 09). Every number comes from
``helixlib.estimate.step`` and ``helixlib.validation.published``; these functions only arrange them."""

from __future__ import annotations

from helixlib.core.units import seconds, si, table
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.estimate.step import StepEstimate


def step_report(est: StepEstimate) -> str:
    """A step estimate as text: the configuration, one block's ops and collectives, the step, memory."""
    par, m, c = est.parallel, est.model, est.cluster
    lines = [f"{m.name} ({m.layers} layers, h={m.hidden}, a={m.heads}, s={m.seq_len}, V={m.vocab}, {m.dtype}) on "
             f"{c.name}: {par.strategy} t={par.tensor} p={par.pipeline} d={par.data} v={par.virtual}, micro-batch "
             f"{par.micro_batch} x {par.micro_batches} per pipeline, global batch {par.batch}, recompute "
             f"{par.recompute}{', flash' if par.flash else ''}{', ZeRO-' + str(par.zero) if par.zero else ''}", ""]
    ops = [[r.op.name, r.op.kind, si(float(r.op.flops), "FLOP"), si(float(r.op.bytes), "B"),
            f"{float(r.forward.efficiency):.2f}", seconds(float(r.forward.time_s)), seconds(float(r.backward_s))]
           for r in est.block.ops]
    lines += [table(ops, ["op", "kind", "FLOPs", "bytes", "eff", "forward", "backward"]), ""]
    comms = [[r.comm.name, r.comm.kind, r.run, f"{int(r.comm.p)}@{int(r.comm.nodes)}n", si(float(r.comm.bytes), "B"),
              seconds(float(r.time_s)), seconds(float(r.exposed_s))] for r in est.block.comms if float(r.weight)]
    lines += [table(comms, ["collective", "kind", "run", "ranks", "size", "time", "exposed"]), ""]
    b = est.block
    step = [["one layer, forward", seconds(float(b.forward_s))], ["one layer, backward", seconds(float(b.backward_s))],
            ["pipeline (all micro-batches)", seconds(est.pipeline_s)], ["  of which bubble", seconds(est.bubble_s)],
            ["data-parallel reduction, exposed", f"{seconds(est.dp_exposed_s)} of {seconds(est.dp_s)}"],
            ["tied-embedding all-reduce", seconds(est.embedding_sync_s)], ["optimizer", seconds(est.optimizer_s)],
            ["step", seconds(est.time_s)]]
    lines += [table(step, ["", "time"]), ""]
    lines.append(f"model FLOPs/GPU: {si(est.per_gpu(est.model_flops), 'FLOP/s')}  hardware: "
                 f"{si(est.per_gpu(est.hardware_flops), 'FLOP/s')}  MFU {est.mfu:.1%}  HFU {est.hfu:.1%}")
    mem = est.memory
    rows = [[t, si(float(getattr(mem, t)), "B")] for t in MemoryBreakdown.TERMS]
    rows += [["total", si(float(mem.total), "B")], ["capacity", si(mem.capacity, "B")]]
    lines += ["", table(rows, ["memory per GPU", "bytes"]), f"verdict: {'fits' if mem.fits else 'does NOT fit'}"]
    return "\n".join(lines)


# ---- validation against published runs ------------------------------------------------------

FOLDED_HEADER = ["source", "quantity", "rows", "mean |err|", "max |err|", "mean signed", "fully specified", "fits"]


def folded_rows(results: list[dict]) -> list[list]:
    """One row per (source, quantity) of ``helixlib.validation.published.evaluate``: errors over all its rows
    (utilisation in points), how many rows are fully specified and how many the estimate says fit."""
    out = []
    for key in dict.fromkeys((r["source"], r["quantity"]) for r in results):
        sel = [r for r in results if (r["source"], r["quantity"]) == key]
        pts = sel[0]["points"] is not None
        errs = [r["points"] if pts else 100 * r["error"] for r in sel]
        unit = " pt" if pts else " %"
        fit = [r["fits"] for r in sel if r["group"] != "per layer"]
        out.append([key[0], key[1], len(sel), f"{sum(map(abs, errs)) / len(errs):.1f}{unit}",
                    f"{max(map(abs, errs)):.1f}{unit}", f"{sum(errs) / len(errs):+.1f}{unit}",
                    f"{sum(r['specified'] for r in sel)}/{len(sel)}", f"{sum(fit)}/{len(fit)}" if fit else "-"])
    return out


SUMMARY_HEADER = ["group", "rows", "mean |err|", "max |err|", "goal (mean, max)", "met", "sources"]


def summary_rows(summary: dict) -> list[list]:
    fmt = lambda g, x: f"{x * 100:.1f} pt" if g == "utilisation" else f"{x:.1%}"
    return [[g, s["rows"], fmt(g, s["mean_abs"]), fmt(g, s["max_abs"]),
             f"{fmt(g, s['goal_mean'])}, {fmt(g, s['goal_max'])}", "yes" if s["met"] else "NO", ", ".join(s["sources"])]
            for g, s in summary.items()]


PANELS = {"per_layer_forward_s": ("one layer (s)", 1.0), "per_layer_backward_s": ("one layer (s)", 1.0),
          "iteration_s": ("one step (s)", 1.0), "tflops_per_gpu_narayanan": ("TFLOP/s per GPU", 1e-12),
          "mfu": ("MFU / HFU (%)", 100.0), "hfu_korthikanti": ("MFU / HFU (%)", 100.0)}


def plot_parity(results: list[dict], axes=None):
    """Predicted against published, one panel per unit, ±5 % and ±10 % bands; hollow markers: partly specified."""
    import matplotlib.pyplot as plt
    import numpy as np

    titles = list(dict.fromkeys(t for t, _ in PANELS.values()))
    if axes is None:
        _, axes = plt.subplots(1, len(titles), figsize=(4 * len(titles), 3.8))
    sources = sorted({r["source"] for r in results})
    colors = dict(zip(sources, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, title in zip(axes, titles):
        sel = [r for r in results if PANELS[r["quantity"]][0] == title]
        if not sel:
            continue
        scale = PANELS[sel[0]["quantity"]][1]
        xs = [r["published"] * scale for r in sel] + [r["predicted"] * scale for r in sel]
        for src in sources:
            labelled = False
            for spec in (True, False):
                pts = [r for r in sel if r["source"] == src and r["specified"] == spec]
                if pts:
                    ax.scatter([r["published"] * scale for r in pts], [r["predicted"] * scale for r in pts], s=26,
                               facecolors=colors[src] if spec else "none", edgecolors=colors[src],
                               label=None if labelled else src)
                    labelled = True
        lo, hi = min(xs) / 1.15, max(xs) * 1.15
        x = np.geomspace(lo, hi, 20)
        ax.plot(x, x, "k-", lw=1)
        for band, style in ((0.05, "--"), (0.10, ":")):
            ax.plot(x, x * (1 + band), "k" + style, lw=0.7, label=f"±{band:.0%}")
            ax.plot(x, x * (1 - band), "k" + style, lw=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("published")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=6)
    return axes
