"""The decode design space: every strategy × partition × pipeline stages × replicas × batch × context on
up to N GPUs, priced at once with numpy (``helixlib.estimate.decode.decode_costs``).

``decode_grid(...)`` builds the rows (one column per field of a :class:`DecodeConfig` but the dtypes and
the cache layout, which are per sweep); ``evaluate_decode(table, model, cluster, ...)`` returns one array
per field of ``helixlib.estimate.decode.DECODE_FIELDS``. Rows a strategy cannot run come back with
``valid`` False and NaN times, exactly the configurations ``check_decode_config`` refuses.
"""

from __future__ import annotations

import itertools

import numpy as np

from helixlib.core.numbers import divisors
from helixlib.estimate.decode import DECODE_FIELDS, decode_costs
from helixlib.estimate.decode_estimate import decode_label
from helixlib.estimate.hardware import Cluster, load_cluster
from helixlib.plan.model import ModelConfig, load_model
from helixlib.plan.names import DECODE_STRATEGIES, DecodeStrategy, KvLayout

COLUMNS = ("strategy", "split", "second", "pipeline", "replicas", "gpus", "context", "batch")
GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
BATCHES = tuple(2 ** k for k in range(13))  # 1 ... 4096


def partitions(strategy: str, width: int) -> list[tuple[int, int]]:
    """(split, second) pairs of ``strategy`` on a group of ``width`` GPUs."""
    if strategy == DecodeStrategy.MEGATRON_TP:
        return [(width, 1)]
    return [(a, width // a) for a in divisors(width)]


def decode_grid(gpus=GPU_COUNTS, batches=BATCHES, contexts=(2 ** 20,), strategies=DECODE_STRATEGIES,
                pipelines=(1, 2, 4, 8), replicas=(1, 2, 4, 8)) -> dict[str, np.ndarray]:
    """Every (strategy, split, second, pipeline, replicas) with ``width·pipeline·replicas`` in ``gpus``,
    crossed with ``batches`` and ``contexts``."""
    configs = []
    for N in gpus:
        for pp, dp in itertools.product(pipelines, replicas):
            if N % (pp * dp):
                continue
            W = N // (pp * dp)
            for s in strategies:
                configs += [(s, a, b, pp, dp, N) for a, b in partitions(s, W)]
    rows = [c + (S, B) for c in configs for S in contexts for B in batches]
    cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
    table = {name: np.array(col) for name, col in zip(COLUMNS, cols)}
    for name in COLUMNS[1:]:
        table[name] = table[name].astype(np.int64)
    return table


def evaluate_decode(table: dict[str, np.ndarray], model: ModelConfig | str, cluster: Cluster | str,
                    weight_dtype: str | None = None, kv_dtype: str | None = None,
                    kv_layout: str = KvLayout.SEPARATE) -> dict[str, np.ndarray]:
    """Every ``DECODE_FIELDS`` array for the rows of ``table`` (one call of ``decode_costs`` per strategy)."""
    model = load_model(model) if isinstance(model, str) else model
    cluster = load_cluster(cluster) if isinstance(cluster, str) else cluster
    n = len(table["strategy"])
    out = {f: np.full(n, np.nan) for f in DECODE_FIELDS}
    for f in ("valid", "fits"):
        out[f] = np.zeros(n, dtype=bool)
    for f in ("max_batch", "gpus"):
        out[f] = np.zeros(n, dtype=np.int64)
    for s in np.unique(table["strategy"]):
        rows = np.nonzero(table["strategy"] == s)[0]
        cols = [table[c][rows] for c in ("split", "second", "context", "batch", "pipeline", "replicas")]
        res = decode_costs(model, cluster, str(s), *cols, weight_dtype, kv_dtype, kv_layout)
        for f in DECODE_FIELDS:
            out[f][rows] = res[f]
    return out


def labels(table: dict[str, np.ndarray], rows=None) -> list[str]:
    """``decode_label`` of the given rows (all by default)."""
    rows = range(len(table["strategy"])) if rows is None else rows
    return [decode_label(str(table["strategy"][i]), int(table["split"][i]), int(table["second"][i]),
                         int(table["pipeline"][i]), int(table["replicas"][i])) for i in rows]
