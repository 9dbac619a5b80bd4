"""The decode explorer: ipywidgets over ``explore_decode()``, a plain function tests can call.

Beside the prefill explorer (``helixlib.views.widgets``): pick a model, a cluster, a strategy (plain TP,
the head-dim split, or KV shards), the GPUs and how they are split (head split × second level × pipeline
stages × replicas), the context S and the batch B; it shows the token-to-token latency by term, memory per
GPU against capacity, and the best configuration of every strategy on the same GPUs, context and batch.
Everything is HTML the browser draws (no matplotlib per update). Set a control's ``.value`` from Python
and ``explorer.result`` is the new result.
"""

from __future__ import annotations

import functools
import html
import inspect
from dataclasses import dataclass, field

import numpy as np

from helixlib.core.errors import HelixInputError
from helixlib.core.palette import TERM_COLORS
from helixlib.core.units import seconds, si
from helixlib.estimate.decode_estimate import DecodeConfig, DecodeEstimate, decode_estimate, decode_label
from helixlib.estimate.decode_layout import decode_layout
from helixlib.estimate.decode_space import decode_grid, evaluate_decode, labels
from helixlib.estimate.hardware import hardware_names, load_cluster
from helixlib.plan.model import DTYPE_BYTES, load_model, preset_names
from helixlib.plan.names import DECODE_STRATEGIES, DecodeStrategy, KvLayout
from helixlib.views.decode_views import BREAKDOWN, BREAKDOWN_COLORS
from helixlib.views.widgets import Explorer, html_bars

GPU_CHOICES = (1, 2, 4, 8, 16, 32, 64, 72)
LEVELS = (1, 2, 4, 8)  # pipeline stages and replicas offered
RANKING_HEADER = ["", "strategy (best on these GPUs)", "TTL", "tokens/s/user", "tokens/s/GPU", "memory/GPU", "fits",
                  "largest batch"]
MEMORY_TERMS = ("weights_bytes", "kv_cache_bytes", "working_bytes", "comm_buffer_bytes", "reserved_bytes")
MEMORY_COLORS = dict(zip(MEMORY_TERMS, (TERM_COLORS["weights"], TERM_COLORS["activations"], TERM_COLORS["working"],
                                        TERM_COLORS["comm_buffers"], TERM_COLORS["reserved"])))


@functools.lru_cache(maxsize=64)
def _model(name: str):
    """A preset read once per session (parsing YAML is most of an update's time otherwise)."""
    return load_model(name)


@functools.lru_cache(maxsize=64)
def _cluster(name: str):
    return load_cluster(name)


@dataclass(frozen=True)
class DecodeExplorerResult:
    values: dict
    error: str | None = None
    estimate: DecodeEstimate | None = None
    ranking: list = field(default_factory=list)  # dicts, best TTL first

    def ranking_rows(self) -> list[list]:
        return [["▶" if r["current"] else "", r["label"], seconds(r["ttl_s"]), f"{1 / r['ttl_s']:.4g}",
                 f"{r['tokens_per_s_per_gpu']:.4g}", si(r["memory"], "B"), "yes" if r["fits"] else "no",
                 r["max_batch"]] for r in self.ranking]


def explore_decode(model="helix-paper-llama-405b", hardware="gb200-nvl72", strategy=DecodeStrategy.HELIX_KV,
                   split=8, second=8, pipeline=1, replicas=1, context=None, batch=None, hop_b=True,
                   weight_dtype=None, kv_dtype=None, kv_layout=KvLayout.SEPARATE) -> DecodeExplorerResult:
    """Estimate one decode configuration and the best of every strategy on the same GPUs."""
    values = dict(model=model, hardware=hardware, strategy=strategy, split=split, second=second, pipeline=pipeline,
                  replicas=replicas, context=context, batch=batch, hop_b=hop_b, weight_dtype=weight_dtype,
                  kv_dtype=kv_dtype, kv_layout=kv_layout)
    try:
        cfg_model = _model(model)
        cluster = _cluster(hardware)
        cfg = DecodeConfig(strategy, split, second, cfg_model.seq_len if context is None else context,
                           cfg_model.batch if batch is None else batch, pipeline, replicas, hop_b, weight_dtype,
                           kv_dtype, kv_layout)
        est = decode_estimate(cfg_model, cluster, cfg)
    except HelixInputError as err:
        return DecodeExplorerResult(values, error=str(err))
    return DecodeExplorerResult(values, None, est, _ranking(est))


DEFAULTS = {k: p.default for k, p in inspect.signature(explore_decode).parameters.items()}


def _ranking(est: DecodeEstimate) -> list[dict]:
    """The lowest-TTL fitting configuration of each strategy on the same GPUs, context and batch (or the
    lowest-TTL one if none fits), and the current one."""
    cfg = est.config
    t = decode_grid(gpus=(cfg.gpus,), batches=(cfg.batch,), contexts=(cfg.context,), pipelines=LEVELS,
                    replicas=LEVELS)
    r = evaluate_decode(t, est.model, est.cluster, cfg.weight_dtype, cfg.kv_dtype, cfg.kv_layout)
    ttl = r["ttl_hop_b_s" if cfg.hop_b else "ttl_s"]
    tput = r["tokens_per_s_per_gpu_hop_b" if cfg.hop_b else "tokens_per_s_per_gpu"]
    rows = []
    for s in DECODE_STRATEGIES:
        sel = r["valid"] & (t["strategy"] == s)
        if not sel.any():
            continue
        pool = sel & r["fits"] if (sel & r["fits"]).any() else sel
        i = np.nonzero(pool)[0][np.argmin(ttl[pool])]
        if labels(t, [i])[0] == cfg.label():
            continue  # the current configuration is its strategy's best: listed once, below
        rows.append(_row(labels(t, [i])[0], False, ttl[i], tput[i], r["memory_bytes"][i], r["fits"][i],
                         r["max_batch"][i]))
    c = est.costs
    sfx = "_hop_b" if cfg.hop_b else ""
    rows.append(_row(cfg.label(), True, est.ttl_s, c["tokens_per_s_per_gpu" + sfx], c["memory_bytes"], c["fits"],
                     c["max_batch"]))
    return sorted(rows, key=lambda row: (not row["fits"], row["ttl_s"], not row["current"]))


def _row(label, current, ttl, tput, memory, fits, max_batch) -> dict:
    return {"label": label, "current": current, "ttl_s": float(ttl), "tokens_per_s_per_gpu": float(tput),
            "memory": float(memory), "fits": bool(fits), "max_batch": int(max_batch)}


def summary_html(result: DecodeExplorerResult) -> str:
    """TTL by term and memory per GPU by term, as bars."""
    est = result.estimate
    c, cfg = est.costs, est.config
    head = (f"<b>{est.model.name}, {cfg.label()} = {cfg.gpus} GPUs on {est.cluster.name}: TTL {seconds(est.ttl_s)}"
            f"{' (HOP-B)' if cfg.hop_b else ''}, {1 / est.ttl_s:.4g} tokens/s per user, "
            f"{est.to_dict()['decode']['tokens_per_s_per_gpu']:.4g} tokens/s per GPU</b>")
    key = " ".join(f'<span style="color:{BREAKDOWN_COLORS[k]}">&#9632;</span> {k.removesuffix("_s")}'
                   for k in BREAKDOWN)
    time_bars = html_bars([("per token (no overlap)", [(c[k], BREAKDOWN_COLORS[k]) for k in BREAKDOWN])], "s",
                          seconds)
    mkey = " ".join(f'<span style="color:{MEMORY_COLORS[k]}">&#9632;</span> {k.removesuffix("_bytes")}'
                    for k in MEMORY_TERMS)
    verdict = "fits" if c["fits"] else "does NOT fit"
    mem_bars = html_bars([("memory per GPU", [(c[k], MEMORY_COLORS[k]) for k in MEMORY_TERMS])], "",
                         lambda v: si(v, "B"), c["capacity_bytes"], "capacity")
    return (f"{head}<div>{key}</div>{time_bars}<b>memory per GPU: {si(c['memory_bytes'], 'B')}, {verdict}; largest "
            f"batch {int(c['max_batch'])}; KV copies {c['duplication']:.3g}</b><div>{mkey}</div>{mem_bars}")


def partition_options(model_name: str, strategy: str, gpus: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(label, (split, second, pipeline, replicas)) the model admits on ``gpus`` GPUs."""
    try:
        model = _model(model_name)
    except HelixInputError:
        return []
    t = decode_grid(gpus=(gpus,), batches=(1,), contexts=(1 << 30,), strategies=(strategy,), pipelines=LEVELS,
                    replicas=LEVELS)
    ok = decode_layout(model, strategy, t["split"], t["second"], t["context"]).valid
    ok = ok & (model.layers % t["pipeline"] == 0)
    return [(decode_label(strategy, *key), key) for key in
            zip(*(t[c][ok].tolist() for c in ("split", "second", "pipeline", "replicas")))]


class DecodeExplorer(Explorer):
    """The controls, their dependencies (model, strategy, GPUs → the splits offered; model → S and B) and one
    ``explore_decode`` per change (rendering on change and pausing it while dependents are set are the
    prefill explorer's)."""

    def __init__(self, **values):
        import ipywidgets as W

        v = DEFAULTS | values
        m = _model(v["model"])
        dtypes = [("model's", None)] + [(d, d) for d in DTYPE_BYTES]
        self.controls = {
            "model": W.Dropdown(options=preset_names(), value=v["model"], description="model"),
            "hardware": W.Dropdown(options=hardware_names("cluster"), value=v["hardware"], description="hardware"),
            "strategy": W.Dropdown(options=DECODE_STRATEGIES, value=v["strategy"], description="strategy"),
            "gpus": W.Dropdown(options=GPU_CHOICES, value=v["split"] * v["second"] * v["pipeline"] * v["replicas"],
                               description="GPUs"),
            "partition": W.Dropdown(description="split"),
            "context": W.IntText(value=v["context"] or m.seq_len, description="context S", continuous_update=False),
            "batch": W.IntText(value=v["batch"] or m.batch, description="batch B", continuous_update=False),
            "hop_b": W.Checkbox(value=v["hop_b"], description="HOP-B"),
            "weight_dtype": W.Dropdown(options=dtypes, value=v["weight_dtype"], description="weights"),
            "kv_dtype": W.Dropdown(options=dtypes, value=v["kv_dtype"], description="KV cache"),
            "kv_layout": W.Dropdown(options=tuple(KvLayout), value=v["kv_layout"], description="KV layout"),
        }
        self._suspend = False
        self._last: dict | None = None
        self.result: DecodeExplorerResult | None = None
        self._refresh_partitions((v["split"], v["second"], v["pipeline"], v["replicas"]))
        refresh = lambda _: self._refresh_partitions()
        # the model's handler is registered before interactive_output, so it runs first
        for name, handler in (("model", self._model_changed), ("strategy", refresh), ("gpus", refresh)):
            self.controls[name].observe(handler, "value")
        self.output = W.interactive_output(self._render, self.controls)
        columns = [W.VBox(list(self.controls.values())[i:i + 4]) for i in range(0, len(self.controls), 4)]
        self.widget = W.VBox([W.HBox(columns), self.output])

    def _model_changed(self, change) -> None:
        m = _model(change["new"])
        with self._suspended():
            self.controls["context"].value, self.controls["batch"].value = m.seq_len, m.batch
        self._refresh_partitions()

    def _refresh_partitions(self, keep=None) -> None:
        c = self.controls
        with self._suspended():
            opts = partition_options(c["model"].value, c["strategy"].value, c["gpus"].value)
            keep = keep or c["partition"].value
            c["partition"].options = opts
            if opts:
                keys = [k for _, k in opts]
                c["partition"].value = keep if keep in keys else keys[len(keys) // 2]

    def _render(self, **values) -> None:
        if self._suspend or values == self._last:
            return
        self.update(**values)

    def update(self, **values) -> DecodeExplorerResult:
        """Compute and show for ``values`` (the controls' values by default)."""
        from IPython.display import HTML, display

        values = values or {k: w.value for k, w in self.controls.items()}
        self._last = values
        kw = {k: v for k, v in values.items() if k not in ("gpus", "partition")}
        if values["partition"] is None:
            self.result = DecodeExplorerResult(values, error=f"no way to split {values['model']} over "
                                                             f"{values['gpus']} GPUs with {values['strategy']}")
        else:
            split, second, pipeline, replicas = values["partition"]
            self.result = explore_decode(**kw, split=split, second=second, pipeline=pipeline, replicas=replicas)
        display(HTML(self._html()))
        return self.result

    def _html(self) -> str:
        from helixlib.views.tables import html_table

        r = self.result
        if r.error:
            return f"<b>cannot estimate:</b> {html.escape(r.error)}"
        return summary_html(r) + html_table(r.ranking_rows(), RANKING_HEADER)

    def show_snapshot(self) -> None:
        """The explorer's current output as static HTML, for readers without a kernel."""
        from IPython.display import HTML, display

        v = self.result.values
        gpus = v["split"] * v["second"] * v["pipeline"] * v["replicas"]
        display(HTML(f"<b>Snapshot of the explorer</b> ({v['model']}, {v['hardware']}, {v['strategy']}, "
                     f"{gpus} GPUs): what it shows before any control moves." + self._html()))
