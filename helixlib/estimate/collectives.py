"""Collectives by message size: measured bus-bandwidth curves and NCCL's protocol regimes.

**Curves** (``data/hardware/nccl/*.yaml``) are published nccl-tests sweeps, one per collective
kind, group size (``ranks``), nodes spanned and algorithm (ring / tree / NVLS / "default", what
NCCL chose), as ``[bytes, microseconds]`` points with their source. The time of ``S`` bytes is
interpolated in log-size and log-time between the measured sizes; below the smallest size a curve
says nothing (the protocol model answers); above the largest it continues the last two points'
line. Sweeps of the same (kind, ranks, nodes, algorithm) from different machines are combined
by their geometric mean (the spread between machines is itself a measured uncertainty); different
algorithms by the minimum, as NCCL's tuner picks the fastest. A curve with ``role: reference`` is
kept to compare against (a forced algorithm, a tuned or single-process launch) and not used.

**Protocols** (NCCL ``src/graph/tuning.cc``): LL, LL128 and Simple each have a base latency, a
latency per ring step over NVLink and over the network, and a fraction of the bus bandwidth they
reach (LL moves 8-byte lines with 4-byte flags: half; LL128 120 of 128 bytes; Simple all). A ring
collective of ``p`` ranks on ``k`` nodes (``r = p/k`` per node, one NIC per GPU) takes::

    T = min over protocols of  base + (s − s_net)·hop_nvlink + s_net·hop_net + S·f / (busbw · fraction)
    busbw = NVLink busbw inside a node;  min(NVLink busbw, r · NIC busbw) across nodes

with ``s = 2(p−1)`` steps for an all-reduce (``p−1`` otherwise), ``s_net = 2(k−1)`` (``k−1``) of them
over the network: NCCL's rings cross each node boundary once per channel, one channel per NIC, so
the ``r`` NICs of a node carry the inter-node traffic side by side. This is what the small and
middle sizes look like where no curve was measured: latency-bound, then LL128, then Simple.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helixlib.core import presets
from helixlib.core.errors import HelixInputError, positive_int
from helixlib.core.presets import HARDWARE_DIR
from helixlib.estimate import fields
from helixlib.plan.names import CollectiveKind, bus_factor

ROLES = ("model", "reference")
US = 1e-6


@dataclass(frozen=True)
class CollectiveCurve:
    """One published sweep: ``sizes`` (bytes, ascending) and ``seconds`` per call."""

    id: str
    kind: str
    ranks: int
    nodes: int
    algorithm: str
    sizes: tuple[float, ...]
    seconds: tuple[float, ...]
    source: str
    role: str = "model"
    note: str = ""

    @property
    def key(self) -> tuple[str, int, int]:
        return self.kind, self.ranks, self.nodes

    def time(self, nbytes):
        """Seconds per call of ``nbytes`` (NaN below the smallest measured size)."""
        S = np.asarray(nbytes, dtype=float)
        logS, logT = np.log(self.sizes), np.log(self.seconds)
        inside = np.exp(np.interp(np.log(np.maximum(S, 1.0)), logS, logT))
        (s0, s1), (t0, t1) = self.sizes[-2:] if len(self.sizes) > 1 else (0.0, self.sizes[0]), \
            self.seconds[-2:] if len(self.seconds) > 1 else (0.0, self.seconds[0])
        slope = (t1 - t0) / (s1 - s0)  # the last two points' marginal time per byte
        beyond = t1 + (S - s1) * (slope if slope > 0 else t1 / s1)
        return np.where(S < self.sizes[0], np.nan, np.where(S > self.sizes[-1], beyond, inside))

    def busbw(self, nbytes=None):
        """nccl-tests bus bandwidth ``S·f/T`` at ``nbytes`` (default: the measured sizes)."""
        S = np.asarray(self.sizes if nbytes is None else nbytes, dtype=float)
        return S * bus_factor(self.kind, self.ranks) / self.time(S)


@dataclass(frozen=True)
class Protocol:
    """One NCCL protocol: latencies (seconds) and the fraction of the bus bandwidth it reaches."""

    name: str
    base_latency_s: float
    nvlink_hop_s: float
    net_hop_s: float
    bandwidth_factor: float


_CURVE_FIELDS = ("id", "kind", "ranks", "nodes", "algorithm", "source", "points")
_CURVE_OPTIONAL = ("role", "note", "nccl", "launch", "time_derived", "hardware")
PROTOCOL_FIELDS = ("base_latency_s", "nvlink_hop_s", "net_hop_s", "bandwidth_factor")


def curve_from_dict(raw: dict, where: str) -> CollectiveCurve:
    raw = fields.mapping(where, raw, _CURVE_FIELDS, _CURVE_OPTIONAL)
    kind = raw["kind"]
    if kind not in tuple(CollectiveKind):
        raise HelixInputError(f"{where}.kind", f"must be one of {', '.join(CollectiveKind)}", kind)
    role = fields.text(f"{where}.role", raw.get("role"), "model")
    if role not in ROLES:
        raise HelixInputError(f"{where}.role", f"must be one of {', '.join(ROLES)}", role)
    pts = sorted(fields.rows(f"{where}.points", raw["points"], "bytes, microseconds"))
    sizes = [s for s, _ in pts]
    if len(set(sizes)) != len(sizes):
        raise HelixInputError(f"{where}.points", "sizes must differ", sizes)
    ranks = positive_int(f"{where}.ranks", raw["ranks"], minimum=2)
    nodes = positive_int(f"{where}.nodes", raw["nodes"])
    if ranks % nodes:
        raise HelixInputError(f"{where}.nodes", f"must divide ranks ({ranks})", nodes)
    return CollectiveCurve(str(raw["id"]), kind, ranks, nodes, str(raw["algorithm"]), tuple(sizes),
                           tuple(t * US for _, t in pts), fields.source(f"{where}.", raw), role,
                           fields.text(f"{where}.note", raw.get("note")))


def load_curves(name: str, base: Path = HARDWARE_DIR) -> tuple[CollectiveCurve, ...]:
    """The curves of one file (``nccl/dgx-a100.yaml``: relative to ``base``, then to the shipped presets).
    Parsed once per file version (the sweeps are long and YAML is slow)."""
    path = Path(name)
    if not path.is_absolute():
        path = base / name if (base / name).is_file() else HARDWARE_DIR / name
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None  # read_yaml says what is wrong with it
    return _load_curves(name, str(path), stamp)


@functools.lru_cache(maxsize=64)
def _load_curves(name: str, path: str, stamp) -> tuple[CollectiveCurve, ...]:
    raw = fields.mapping(name, presets.read_yaml("collective_curves", path), ("kind", "source", "curves"))
    fields.require_kind(f"{name}.", raw, "collective_curves")
    if not isinstance(raw["curves"], list) or not raw["curves"]:
        raise HelixInputError(f"{name}.curves", "must be a non-empty list", raw["curves"])
    return tuple(curve_from_dict(c, f"{name}.curves[{i}]") for i, c in enumerate(raw["curves"]))


def protocols_from_dict(raw, where: str) -> tuple[Protocol, ...]:
    if not isinstance(raw, dict) or not raw:
        raise HelixInputError(where, "must map protocol names to their latencies and bandwidth factor", raw)
    out = []
    for name, r in raw.items():
        w = f"{where}.{name}"
        r = fields.mapping(w, r, PROTOCOL_FIELDS)
        out.append(Protocol(str(name), *(fields.number(f"{w}.{f}", r[f], lo_open=False) for f in PROTOCOL_FIELDS[:3]),
                            fields.number(f"{w}.bandwidth_factor", r["bandwidth_factor"], hi=1.0)))
    return tuple(out)


# ---- evaluating ----------------------------------------------------------------------------


_INDEX: dict[int, tuple] = {}  # id(curves) -> (curves, {kind: index}): hashing every curve per call is slow


def _index(curves: tuple[CollectiveCurve, ...], kind: str) -> tuple:
    """The model curves of ``kind``: ((ranks, nodes, (members of one algorithm, ...)), ...), memoised per
    curves tuple (a cluster's, which lives as long as the cluster)."""
    entry = _INDEX.get(id(curves))
    if entry is None or entry[0] is not curves:
        if len(_INDEX) > 64:  # clusters built over and over (tests, calibrations): start again
            _INDEX.clear()
        entry = _INDEX[id(curves)] = (curves, {})
    if kind not in entry[1]:
        entry[1][kind] = _build_index(curves, kind)
    return entry[1][kind]


def _build_index(curves, kind: str) -> tuple:
    by_key: dict[tuple, dict[str, list[CollectiveCurve]]] = {}
    for c in curves:
        if c.role == "model" and c.kind == kind:
            by_key.setdefault((c.ranks, c.nodes), {}).setdefault(c.algorithm, []).append(c)
    return tuple((ranks, nodes, tuple(tuple(m) for m in algos.values())) for (ranks, nodes), algos in by_key.items())


def curve_time(curves, kind: str, nbytes, p, nodes):
    """Seconds per call from the ``model`` curves of (kind, p, nodes); NaN where none covers the size."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (nbytes, p, nodes)))
    index = _index(curves if isinstance(curves, tuple) else tuple(curves), kind)
    if not index:
        return np.full(shape, np.nan)
    S, p_, k = (a.ravel() for a in np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (nbytes, p, nodes))))
    out = np.full(S.shape, np.nan)
    for ranks, n, algos in index:
        hit = np.nonzero((p_ == ranks) & (k == n))
        if not hit[0].size:
            continue
        sizes = S[hit]  # only the rows of this group size and span
        best = np.full(sizes.shape, np.nan)
        for members in algos:
            logs = np.log(np.stack([c.time(sizes) for c in members]))
            ok = np.isfinite(logs)
            count = ok.sum(axis=0)
            mean = np.where(ok, logs, 0.0).sum(axis=0) / np.maximum(count, 1)
            best = np.fmin(best, np.where(count > 0, np.exp(mean), np.nan))
        out[hit] = best
    return out.reshape(shape)


def ring_busbw(intra_busbw, inter_busbw, p, nodes):
    """Bus bandwidth of a ring of ``p`` ranks on ``nodes`` nodes (see the module docstring)."""
    p_, k = np.asarray(p, dtype=float), np.asarray(nodes, dtype=float)
    local = p_ / k
    across = np.minimum(np.where(local > 1, intra_busbw, np.inf), local * inter_busbw)
    return np.where(k > 1, across, intra_busbw)
