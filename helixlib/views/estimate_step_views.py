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


# ---- the micro-level data the kernel models come from ----------------------------------------

GEMM_HEADER = ["device", "shapes", "max eff", "half dim", "exponent", "launch", "mean |err|", "max |err|"]


def gemm_fit_rows(devices=(("a100-sxm4-80gb", "a100-sxm4-80gb"), ("h100-sxm5-80gb", "h100-sxm5-80gb"))) -> list[list]:
    """Per (device, table): the GEMM curve ``fit_gemm`` gets from the published table and how well it fits it."""
    from helixlib.estimate.hardware import load_device
    from helixlib.validation.micro_fit import fit_gemm, load_gemm_table

    rows = []
    for device, name in devices:
        dev, t = load_device(device), load_gemm_table(name)
        f = fit_gemm(t, dev.peak_flops("bf16"), "", "")
        c = f.curve
        rows.append([device, len(t.tflops), f"{c.max_efficiency:.3f}", f"{c.half_dim:.1f}", f"{c.exponent:.2f}",
                     f"{c.launch_s * 1e6:.1f} us", f"{f.mean_abs_error:.1%}", f"{f.max_abs_error:.1%}"])
    return rows


CURVE_HEADER = ["sweep", "role", "ranks@nodes", "largest size", "busbw there", "model / measured there",
                "mean |model/measured - 1|, >= 1 MB"]


def curve_rows(cluster) -> list[list]:
    """Every published sweep a cluster loads, against the estimator's collective model at the same sizes
    (a ``model`` sweep is part of that model; a ``reference`` one is not)."""
    import numpy as np

    from helixlib.estimate.alphabeta import collective_time

    rows = []
    for c in cluster.curves:
        sizes = np.array([s for s in c.sizes if s >= 1e6])
        if not sizes.size:
            continue
        ratio = collective_time(cluster, c.kind, sizes, c.ranks, c.nodes).time_s / np.array([c.time(s) for s in sizes])
        rows.append([c.id, c.role, f"{c.ranks}@{c.nodes}", si(c.sizes[-1], "B"), si(float(c.busbw()[-1]), "B/s"),
                     f"{1 / ratio[-1]:.2f}", f"{np.abs(1 / ratio - 1).mean():.1%}"])
    return rows


def plot_collective(cluster, kind: str, ranks: int, nodes: int = 1, ax=None):
    """Bus bandwidth against message size: the model and every published sweep of (kind, ranks, nodes)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from helixlib.estimate.alphabeta import bus_bandwidth

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    sizes = np.geomspace(1e3, 8e9, 80)
    ax.plot(sizes, bus_bandwidth(cluster, kind, sizes, ranks, nodes) / 1e9, "k-", lw=1.5, label="model")
    for c in cluster.curves:
        if c.key == (kind, ranks, nodes):
            ax.plot(c.sizes, c.busbw() / 1e9, "o" if c.role == "model" else "x", ms=3,
                    label=f"{c.id} ({c.algorithm}{', reference' if c.role == 'reference' else ''})")
    ax.set_xscale("log")
    ax.set_xlabel("message size S, bytes")
    ax.set_ylabel("bus bandwidth, GB/s")
    ax.set_title(f"{kind}, {ranks} ranks on {nodes} node(s), {cluster.name}", fontsize=9)
    ax.legend(fontsize=6)
    return ax
