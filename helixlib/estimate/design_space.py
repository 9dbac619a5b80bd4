"""The design space: many configurations × strategies, evaluated at once with numpy.

A configuration is (model, cluster, strategy, n, m, qk mode, G, L, B, micro-batch b,
flash, recompute, training). ``grid(...)`` builds the cartesian product of the axes
(helix expanded over every n·m = G and both qk modes; m = 1 is pure head
parallelism, listed once; the strategy names are the CLI's, ``helixlib.plan.names.Strategy``);
``evaluate(table)`` prices every row with the closed-form
Programs of ``helixlib.estimate.strategies`` and the same roofline, α–β, overlap and memory
functions as ``helixlib.estimate.estimator`` (which prices the Plan itself). Rows a strategy
cannot run (n ∤ H, m ∤ d, G ∤ H for Megatron/Ulysses, G ∤ L for the sequence-parallel
strategies and Megatron with SP, b ∤ B, a group not filling whole nodes) come back with ``valid = False``
and NaN times.

Totals are per training (or forward) step of the whole model: ``layers × B/b`` blocks.

Largest micro-batch: memory is ``fixed + b·slope`` (weights, optimizer states and NCCL
buffers do not grow with b; activations, working set and staging do), so each row is
evaluated at b and 2b, and the largest divisor of B below ``(capacity − fixed)/slope``
is taken.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from helixlib.core.errors import positive_int
from helixlib.core.numbers import divisors
from helixlib.core.presets import DEFAULT_CLUSTER, DEFAULT_MODEL
from helixlib.estimate.estimator import block_flops
from helixlib.estimate.hardware import Cluster, load_cluster
from helixlib.estimate.megatron import Block, megatron_program
from helixlib.estimate.memory import MemoryBreakdown, program_memory
from helixlib.estimate.strategies import STRATEGIES, Shapes, helix_program, ring_program, ulysses_program
from helixlib.estimate.timing import program_timing
from helixlib.estimate.workload import fuse_attention
from helixlib.plan import QK_MODES, QkMode
from helixlib.plan.model import DTYPE_BYTES, ModelConfig, load_model

COLUMNS = ("model", "hardware", "strategy", "qk_mode", "head_groups", "dim_segments", "world_size", "seq_len",
           "batch", "micro_batch", "flash", "recompute", "training")
NO_QK = "-"


def label(strategy: str, n: int, m: int, qk: str) -> str:
    if strategy == "helix":
        return f"head-parallel (helix {n}x1)" if m == 1 else f"helix {n}x{m} {qk}"
    return {"megatron-tp": "Megatron TP", "megatron-sp": "Megatron TP+SP", "ulysses": "Ulysses SP",
            "ring": "ring attention"}[strategy]


def _check_axes(**axes) -> None:
    """Every value of the integer axes is a positive whole number (``None``: the model's own, where allowed)."""
    for name, values in axes.items():
        for v in values:
            if v is not None or name in ("world_sizes", "micro_batches"):
                positive_int(name, v)


def grid(models=(DEFAULT_MODEL,), hardware=(DEFAULT_CLUSTER,), world_sizes=(16,), seq_lens=(None,), batches=(None,),
         micro_batches=(1,), flash=(False,), recompute=(False,), training=(False,),
         strategies=STRATEGIES) -> dict[str, np.ndarray]:
    """Every combination of the axes as columns (``None``: the model's own value). ``models`` are preset
    names or ModelConfigs (pass the same ModelConfigs to ``evaluate``)."""
    rows = []
    _check_axes(world_sizes=world_sizes, seq_lens=seq_lens, batches=batches, micro_batches=micro_batches)
    presets = {m if isinstance(m, str) else m.name: m if isinstance(m, ModelConfig) else load_model(m) for m in models}
    for model, hw, G, L, B, b, fl, rc, tr in itertools.product(presets, hardware, world_sizes, seq_lens, batches,
                                                               micro_batches, flash, recompute, training):
        cfg = presets[model]
        L = cfg.seq_len if L is None else L
        B = cfg.batch if B is None else B
        for strategy in strategies:
            if strategy == "helix":
                for n in divisors(G):
                    m = G // n
                    for qk in ((QkMode.REDUCE_SCORES,) if m == 1 else QK_MODES):
                        rows.append((model, hw, strategy, qk, n, m, G, L, B, b, fl, rc, tr))
            else:
                rows.append((model, hw, strategy, NO_QK, 1, 1, G, L, B, b, fl, rc, tr))
    cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
    return {name: np.array(col) for name, col in zip(COLUMNS, cols)}


@dataclass
class _Models:
    """Model dimensions looked up per row."""

    hidden: np.ndarray
    heads: np.ndarray
    mlp_hidden: np.ndarray
    layers: np.ndarray
    dtype: np.ndarray

    @classmethod
    def of(cls, names: np.ndarray, known: dict[str, ModelConfig]) -> _Models:
        uniq, inv = np.unique(names, return_inverse=True)
        cfgs = [known.get(str(u)) or load_model(str(u)) for u in uniq]
        for c in cfgs:
            c.require_standard_attention("the design space")
        pick = lambda f: np.array([getattr(c, f) for c in cfgs])[inv]
        return cls(pick("hidden"), pick("heads"), pick("mlp_hidden"), pick("layers"), pick("dtype"))


RESULT_FIELDS = ("valid", "time_no_overlap", "time_dataflow", "time_perfect_overlap", "compute", "communication",
                 "exposed", "mfu", "memory", "fits", "largest_micro_batch") + tuple(
                     f"memory_{t}" for t in MemoryBreakdown.TERMS)


def evaluate(table: dict[str, np.ndarray], clusters: dict[str, Cluster] | None = None,
             models: dict[str, ModelConfig] | None = None) -> dict[str, np.ndarray]:
    """Price every row of ``table`` (see the module docstring); one array per result field.
    Hardware and models are presets named in the table unless ``clusters`` / ``models`` give them."""
    N = len(table["strategy"])
    clusters = dict(clusters or {})
    for name in np.unique(table["hardware"]):
        clusters.setdefault(str(name), load_cluster(str(name)))
    models = _Models.of(table["model"], models or {})
    out = {f: np.full(N, np.nan) for f in RESULT_FIELDS}
    out["valid"] = np.zeros(N, dtype=bool)
    out["fits"] = np.zeros(N, dtype=bool)
    out["largest_micro_batch"] = np.zeros(N, dtype=np.int64)
    keys = np.char.add(np.char.add(np.char.add(table["strategy"].astype(str), "|"), table["qk_mode"].astype(str)),
                       np.char.add(np.char.add("|", table["hardware"].astype(str)), np.char.add("|", models.dtype)))
    flash_key = table["flash"].astype(bool) & (table["strategy"] != "ring")
    for key in np.unique(keys):
        strategy, qk, hw, dtype = str(key).split("|")
        for fl in (False, True):
            rows = np.nonzero((keys == key) & (flash_key == fl))[0]
            if rows.size:
                _evaluate_group(table, models, clusters[hw], strategy, qk, dtype, fl, rows, out)
    return out


def _valid(strategy, s: Shapes, B, gpn):
    G = s.world_size
    ok = (B % s.micro_batch == 0) & ((G <= gpn) | (G % gpn == 0)) & (s.mlp_hidden % G == 0)
    if strategy == "helix":
        return ok & (s.heads % s.head_groups == 0) & (s.head_dim % s.dim_segments == 0)
    if strategy == "megatron-tp":
        return ok & (s.heads % G == 0)
    ok &= s.seq_len % G == 0
    return ok if strategy == "ring" else ok & (s.heads % G == 0)


def _program(strategy, qk, s: Shapes, cluster, dtype_bytes, flash):
    gpn = cluster.gpus_per_node
    if strategy == "helix":
        prog = helix_program(s, gpn, dtype_bytes, qk == QkMode.GATHER_QK)
    elif strategy.startswith("megatron"):  # forward-only and training rows alike: no dropout (the models have none)
        return megatron_program(s, gpn, dtype_bytes, Block(sp=strategy == "megatron-sp", flash=flash, causal=False))
    else:
        prog = {"ulysses": ulysses_program, "ring": ring_program}[strategy](s, gpn, dtype_bytes)
    return fuse_attention(prog, s.seq_len) if flash else prog


def _shapes(table, models: _Models, rows, micro_batch) -> Shapes:
    col = lambda name: table[name][rows].astype(np.int64)
    return Shapes(micro_batch, col("seq_len"), models.hidden[rows], models.heads[rows], models.mlp_hidden[rows],
                  col("world_size"), col("head_groups"), col("dim_segments"))


def _evaluate_group(table, models: _Models, cluster: Cluster, strategy, qk, dtype, flash, rows, out) -> None:
    B, b = table["batch"][rows].astype(np.int64), table["micro_batch"][rows].astype(np.int64)
    rows = rows[_valid(strategy, _shapes(table, models, rows, b), B, cluster.gpus_per_node)]
    if not rows.size:
        return
    B, b = table["batch"][rows].astype(np.int64), table["micro_batch"][rows].astype(np.int64)
    s = _shapes(table, models, rows, b)
    beta = DTYPE_BYTES[dtype]
    training, recompute = table["training"][rows].astype(bool), table["recompute"][rows].astype(bool)
    layers = models.layers[rows]
    prog = _program(strategy, qk, s, cluster, beta, flash)
    t = program_timing(prog, cluster, dtype, training, recompute)
    mem = program_memory(prog, cluster, layers, training, recompute)
    double = _program(strategy, qk, _shapes(table, models, rows, 2 * b), cluster, beta, flash)
    slope = (program_memory(double, cluster, layers, training, recompute).total - mem.total) / b
    fixed = mem.total - b * slope
    b_fit = np.floor((cluster.device.memory_bytes - fixed) / np.where(slope > 0, slope, 1))
    blocks = layers * (B // b)
    flops = block_flops(B, s.seq_len, s.hidden, s.mlp_hidden) * layers * np.where(training, 3, 1)
    res = {
        "valid": True, "time_no_overlap": t.no_overlap_s * blocks, "time_dataflow": t.dataflow_s * blocks,
        "time_perfect_overlap": t.perfect_overlap_s * blocks, "compute": t.compute_s * blocks,
        "communication": t.communication_s * blocks, "exposed": t.exposed_s * blocks,
        "memory": mem.total, "fits": mem.fits, "largest_micro_batch": largest_divisor_at_most(B, b_fit),
    }
    res["mfu"] = flops / (res["time_dataflow"] * s.world_size * cluster.device.peak_flops(dtype))
    res.update({f"memory_{k}": getattr(mem, k) for k in MemoryBreakdown.TERMS})
    for k, v in res.items():
        out[k][rows] = v


def largest_divisor_at_most(n, x):
    """Per row: the largest divisor of n[i] that is <= x[i] (0 if none)."""
    n, x = np.asarray(n, dtype=np.int64), np.asarray(x, dtype=float)
    out = np.zeros(n.shape, dtype=np.int64)
    for value in np.unique(n):
        ds = np.array(divisors(int(value)))
        sel = n == value
        idx = np.searchsorted(ds, x[sel], side="right") - 1
        out[sel] = np.where(idx >= 0, ds[np.maximum(idx, 0)], 0)
    return out


def labels(table: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([label(s, int(n), int(m), str(q)) for s, n, m, q in
                     zip(table["strategy"], table["head_groups"], table["dim_segments"], table["qk_mode"])])


def best(table: dict[str, np.ndarray], res: dict[str, np.ndarray], by: tuple[str, ...],
         key: str = "time_dataflow", family: bool = True) -> list[dict]:
    """The fastest configuration that fits, per combination of the ``by`` columns.

    ``family=True`` groups every helix partition and qk mode as one strategy ("helix"),
    so a row per strategy family shows its best partition."""
    names = labels(table)
    fam = np.where(table["strategy"] == "helix", "helix", names) if family else names
    ok = res["valid"] & res["fits"]
    cols = [table[c] for c in by]
    out = []
    for combo in sorted(set(zip(*(c[ok] for c in cols), fam[ok])), key=str):
        sel = ok & (fam == combo[-1])
        for c, v in zip(cols, combo[:-1]):
            sel &= c == v
        i = np.nonzero(sel)[0][np.argmin(res[key][sel])]
        out.append({**{b: _py(table[b][i]) for b in by}, "strategy": str(fam[i]), "best": str(names[i]),
                    key: float(res[key][i]), "mfu": float(res["mfu"][i]), "memory": float(res["memory"][i])})
    return out


def _py(v):
    return v.item() if isinstance(v, np.generic) else v
