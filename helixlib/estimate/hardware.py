"""Hardware presets (``data/hardware/*.yaml``): devices and the clusters built from them.

A **device** is one accelerator: dense matmul peak per dtype, element-wise (vector) peak,
memory bandwidth and capacity, and the efficiency knobs the roofline applies
(``helixlib.estimate.roofline``). A **cluster** places devices ``gpus_per_node`` to a node, with
an intra-node link (NVLink) and an inter-node link (one NIC per GPU), NCCL-style
latencies (``helixlib.estimate.alphabeta``) and, optionally, measured α/β per collective kind
and group size that replace the topology model (what ``calibrate`` writes for a
machine whose collectives were measured).

Units: bytes, seconds, FLOP/s, bytes/s. Link bandwidths are **per direction** (NVLink3's
"600 GB/s" is 300 GB/s each way; mixing the two is the classic 2× error).

The loader is strict: an unknown or missing field, or a value of the wrong kind, raises
:class:`~helixlib.core.errors.HelixInputError` naming the field (the CLI prints one line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from helixlib.core import presets
from helixlib.core.errors import HelixInputError, positive_int
from helixlib.core.presets import HARDWARE_DIR
from helixlib.plan.model import DTYPE_BYTES
from helixlib.plan.names import ELEMENTWISE_KINDS, CollectiveKind

COLLECTIVE_KINDS = tuple(CollectiveKind)


@dataclass(frozen=True)
class Device:
    """One accelerator. ``matmul_measured[dtype]`` (optional) lists measured
    ``(M, K, N, FLOP/s)`` points that replace the parametric matmul efficiency;
    ``elementwise_measured[dtype][kind]`` (optional) lists measured ``(bytes, B/s)`` points
    of one element-wise kind (layernorm, softmax, gelu, add) that replace
    ``memory_bandwidth · memory_efficiency`` for that kind."""

    name: str
    memory_bytes: float
    reserved_bytes: float  # context, workspaces, allocator slack: not available to tensors
    matmul_flops: dict[str, float]  # dense peak FLOP/s per dtype
    vector_flops: float  # element-wise FLOP/s
    memory_bandwidth: float  # B/s
    matmul_efficiency: float  # large-GEMM fraction of peak
    matmul_half_dim: float  # dim at which a GEMM dim halves throughput: factor x/(x + half)
    memory_efficiency: float  # fraction of memory bandwidth element-wise kernels reach
    flash_efficiency: float  # fraction of peak a fused attention kernel reaches
    launch_overhead_s: float  # per kernel
    source: str
    matmul_measured: dict[str, tuple[tuple[float, float, float, float], ...]] = field(default_factory=dict)
    elementwise_measured: dict[str, dict[str, tuple[tuple[float, float], ...]]] = field(default_factory=dict)

    def peak_flops(self, dtype: str) -> float:
        if dtype not in self.matmul_flops:
            raise HelixInputError("dtype", f"{self.name} has no matmul peak for it "
                                           f"(has {', '.join(self.matmul_flops)})", dtype)
        return self.matmul_flops[dtype]

    @property
    def usable_bytes(self) -> float:
        return self.memory_bytes - self.reserved_bytes


@dataclass(frozen=True)
class Link:
    """One direction of a link as one GPU sees it."""

    bandwidth: float  # B/s per direction (datasheet: an upper bound)
    efficiency: float  # fraction of it collectives reach as bus bandwidth at large messages
    hop_latency_s: float  # latency per ring step over this link

    @property
    def bus_bandwidth(self) -> float:
        return self.bandwidth * self.efficiency


@dataclass(frozen=True)
class MeasuredCollective:
    """A measured fit ``T = alpha_s + S·f/busbw`` (nccl-tests conventions) for one kind and group size."""

    alpha_s: float
    busbw: float


@dataclass(frozen=True)
class Cluster:
    """Devices on nodes: rank r sits on node ``r // gpus_per_node``."""

    name: str
    device: Device
    gpus_per_node: int
    base_latency_s: float
    intra_node: Link
    inter_node: Link
    communicator_bytes: float  # NCCL buffers per communicator a rank uses
    source: str
    collectives: dict[tuple[str, int], MeasuredCollective] = field(default_factory=dict)

    def nodes_spanned(self, ranks) -> int:
        """How many nodes the ranks of one process group sit on."""
        return len({r // self.gpus_per_node for r in ranks})

    def to_dict(self) -> dict:
        d = self.device
        return {
            "name": self.name, "source": self.source, "gpus_per_node": self.gpus_per_node,
            "base_latency_s": self.base_latency_s, "communicator_bytes": self.communicator_bytes,
            "intra_node": vars(self.intra_node), "inter_node": vars(self.inter_node),
            "collectives": {f"{k}/{p}": vars(v) for (k, p), v in sorted(self.collectives.items())},
            "device": {k: v for k, v in vars(d).items() if k not in ("matmul_measured", "elementwise_measured")}
                      | {"measured_matmul_points": {k: len(v) for k, v in d.matmul_measured.items()},
                         "measured_elementwise_points": {k: {kind: len(rows) for kind, rows in v.items()}
                                                         for k, v in d.elementwise_measured.items()}},
        }


# ---- loading -----------------------------------------------------------------------------


#: every figure of a preset is 0 or has a magnitude in this window (seconds, bytes, B/s, FLOP/s,
#: fractions): wider than any real hardware, narrow enough that no estimate overflows to inf or NaN
MAGNITUDE = (1e-9, 1e18)


def _number(where: str, value, lo: float = 0.0, hi: float = math.inf, lo_open: bool = True) -> float:
    """A finite number in (lo, hi] (or [lo, hi]), 0 or within :data:`MAGNITUDE`; YAML 1.1 reads
    ``3e9`` as a string, so strings are parsed."""
    rule = f"must be a number {'>' if lo_open else '>='} {lo:g}" + ("" if hi == math.inf else f" and <= {hi:g}")
    if isinstance(value, bool):
        raise HelixInputError(where, rule, value)
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise HelixInputError(where, rule, value) from None
    if not math.isfinite(x) or x > hi or x < lo or (lo_open and x == lo):
        raise HelixInputError(where, rule, value)
    if x and not MAGNITUDE[0] <= x <= MAGNITUDE[1]:
        raise HelixInputError(where, f"must be {'' if lo_open else '0 or '}from {MAGNITUDE[0]:g} to "
                                     f"{MAGNITUDE[1]:g} (no hardware is outside that)", value)
    return x


def _mapping(where: str, raw, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(raw, dict):
        raise HelixInputError(where or "preset", "must be a mapping of fields", type(raw).__name__)
    prefix = f"{where}." if where else ""
    unknown = sorted(set(map(str, raw)) - set(required) - set(optional))
    if unknown:
        raise HelixInputError(prefix + unknown[0], f"is not a field here (known: {', '.join(required + optional)})")
    missing = [f for f in required if f not in raw]
    if missing:
        raise HelixInputError(prefix + missing[0], "is required")
    return raw


_DEVICE_FIELDS = ("kind", "name", "memory_bytes", "reserved_bytes", "matmul_flops", "vector_flops",
                  "memory_bandwidth", "matmul_efficiency", "matmul_half_dim", "memory_efficiency",
                  "flash_efficiency", "launch_overhead_s", "source")
_CLUSTER_FIELDS = ("kind", "name", "device", "gpus_per_node", "base_latency_s", "intra_node", "inter_node",
                   "communicator_bytes", "source")
_LINK_FIELDS = ("bandwidth", "efficiency", "hop_latency_s")


def device_from_dict(raw: dict, where: str = "") -> Device:
    p = f"{where}." if where else ""
    if isinstance(raw, dict) and "kind" in raw:
        _kind(p, raw, "device")
    raw = _mapping(where, raw, _DEVICE_FIELDS, ("matmul_measured", "elementwise_measured"))
    peaks = _mapping(p + "matmul_flops", raw["matmul_flops"], (), tuple(DTYPE_BYTES))
    if not peaks:
        raise HelixInputError(p + "matmul_flops", "needs at least one dtype", raw["matmul_flops"])
    measured = {dtype: _rows(f"{p}matmul_measured.{dtype}", rows, "M, K, N, FLOP/s")
                for dtype, rows in _mapping(p + "matmul_measured", raw.get("matmul_measured", {}), (),
                                            tuple(DTYPE_BYTES)).items()}
    vector = {}
    for dtype, kinds in _mapping(p + "elementwise_measured", raw.get("elementwise_measured", {}), (),
                                 tuple(DTYPE_BYTES)).items():
        where_dtype = f"{p}elementwise_measured.{dtype}"
        vector[dtype] = {kind: _rows(f"{where_dtype}.{kind}", rows, "bytes, B/s")
                         for kind, rows in _mapping(where_dtype, kinds, (), ELEMENTWISE_KINDS).items()}
    num = lambda f, **kw: _number(p + f, raw[f], **kw)
    return Device(
        name=str(raw["name"]),
        memory_bytes=num("memory_bytes"),
        reserved_bytes=num("reserved_bytes", lo_open=False),
        matmul_flops={k: _number(f"{p}matmul_flops.{k}", v) for k, v in peaks.items()},
        vector_flops=num("vector_flops"),
        memory_bandwidth=num("memory_bandwidth"),
        matmul_efficiency=num("matmul_efficiency", hi=1.0),
        matmul_half_dim=num("matmul_half_dim", lo_open=False),
        memory_efficiency=num("memory_efficiency", hi=1.0),
        flash_efficiency=num("flash_efficiency", hi=1.0),
        launch_overhead_s=num("launch_overhead_s", lo_open=False),
        source=_source(p, raw),
        matmul_measured=measured,
        elementwise_measured=vector,
    )


def _rows(where: str, rows, columns: str) -> tuple[tuple[float, ...], ...]:
    """A non-empty list of rows of positive numbers, ``columns`` (e.g. "bytes, B/s") each."""
    width = len(columns.split(","))
    if not isinstance(rows, list) or not rows:
        raise HelixInputError(where, f"must be a list of [{columns}] rows", rows)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise HelixInputError(f"{where}[{i}]", f"must be [{columns}]", row)
    return tuple(tuple(_number(f"{where}[{i}]", x) for x in row) for i, row in enumerate(rows))


def cluster_from_dict(raw: dict, where: str = "") -> Cluster:
    p = f"{where}." if where else ""
    if isinstance(raw, dict) and "kind" in raw:  # a device preset is named as such, not by its fields
        _kind(p, raw, "cluster")
    raw = _mapping(where, raw, _CLUSTER_FIELDS, ("collectives",))
    dev = raw["device"]
    device = device_from_dict(dev, p + "device") if isinstance(dev, dict) else load_device(str(dev))

    def link(name: str) -> Link:
        r = _mapping(p + name, raw[name], _LINK_FIELDS)
        return Link(_number(f"{p}{name}.bandwidth", r["bandwidth"]),
                    _number(f"{p}{name}.efficiency", r["efficiency"], hi=1.0),
                    _number(f"{p}{name}.hop_latency_s", r["hop_latency_s"], lo_open=False))

    measured = {}
    for kind, by_size in _mapping(p + "collectives", raw.get("collectives") or {}, (), COLLECTIVE_KINDS).items():
        if not isinstance(by_size, dict) or not by_size:
            raise HelixInputError(f"{p}collectives.{kind}", "must map group sizes to {alpha_s, busbw}", by_size)
        for size, fit in by_size.items():
            where_fit = f"{p}collectives.{kind}.{size}"
            group = positive_int(where_fit, size)
            if group < 2:
                raise HelixInputError(where_fit, "group size must be at least 2", size)
            fit = _mapping(where_fit, fit, ("alpha_s", "busbw"))
            measured[(kind, group)] = MeasuredCollective(_number(where_fit + ".alpha_s", fit["alpha_s"], lo_open=False),
                                                         _number(where_fit + ".busbw", fit["busbw"]))
    return Cluster(
        name=str(raw["name"]),
        device=device,
        gpus_per_node=positive_int(p + "gpus_per_node", raw["gpus_per_node"]),
        base_latency_s=_number(p + "base_latency_s", raw["base_latency_s"], lo_open=False),
        intra_node=link("intra_node"),
        inter_node=link("inter_node"),
        communicator_bytes=_number(p + "communicator_bytes", raw["communicator_bytes"], lo_open=False),
        source=_source(p, raw),
        collectives=measured,
    )


def _kind(prefix: str, raw: dict, kind: str) -> None:
    if raw["kind"] != kind:
        raise HelixInputError(prefix + "kind", f"must be {kind}", raw["kind"])


def _source(prefix: str, raw: dict) -> str:
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise HelixInputError(prefix + "source", "must say where the figures come from", raw["source"])
    return raw["source"]


def hardware_names(kind: str | None = None) -> list[str]:
    """Preset names under data/hardware (``kind`` = "device" or "cluster" to filter)."""
    names = []
    for name in presets.preset_names(HARDWARE_DIR):
        raw = presets.read_yaml("hardware", HARDWARE_DIR / f"{name}.yaml")
        if kind is None or (isinstance(raw, dict) and raw.get("kind") == kind):
            names.append(name)
    return names


def _read(name_or_path: str | Path, kind: str) -> dict:
    return presets.read_yaml("hardware", presets.resolve_preset("hardware", name_or_path, HARDWARE_DIR,
                                                                 known=hardware_names(kind), what=f"{kind} preset"))


def load_device(name_or_path: str | Path) -> Device:
    """A device preset by name (``a100-sxm4-80gb``) or YAML path."""
    return device_from_dict(_read(name_or_path, "device"))


def load_cluster(name_or_path: str | Path) -> Cluster:
    """A cluster preset by name (``dgx-a100``) or YAML path."""
    return cluster_from_dict(_read(name_or_path, "cluster"))
