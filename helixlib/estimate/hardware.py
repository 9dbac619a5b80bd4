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

import functools
from dataclasses import dataclass, field
from pathlib import Path

from helixlib.core import presets
from helixlib.core.errors import HelixInputError, positive_int
from helixlib.core.presets import HARDWARE_DIR
from helixlib.estimate import fields
from helixlib.estimate.collectives import (
    CollectiveCurve,
    Protocol,
    curve_from_dict,
    load_curves,
    protocols_from_dict,
)
from helixlib.estimate.kernels import GemmCurve, gemm_from_dict
from helixlib.estimate.preset_index import clusters_with_device, hardware_names
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
    flash_efficiency: float  # fraction of peak a fused attention kernel reaches (forward, no mask)
    launch_overhead_s: float  # per kernel
    source: str
    matmul_measured: dict[str, tuple[tuple[float, float, float, float], ...]] = field(default_factory=dict)
    elementwise_measured: dict[str, dict[str, tuple[tuple[float, float], ...]]] = field(default_factory=dict)
    gemm: dict[str, GemmCurve] = field(default_factory=dict)  # fitted GEMM efficiency by shape, per dtype
    flash_causal_efficiency: float | None = None  # forward with causal skipping (FLOPs halved); None: as unmasked
    flash_backward_efficiency: float | None = None  # backward (2.5x the forward FLOPs); None: as forward

    def flash_fraction(self, causal: bool = False, backward: bool = False) -> float:
        """Fraction of peak a flash kernel reaches, forward or backward, with or without causal skipping."""
        fwd = self.flash_causal_efficiency if causal and self.flash_causal_efficiency else self.flash_efficiency
        if not backward or self.flash_backward_efficiency is None:
            return fwd
        return fwd * self.flash_backward_efficiency / self.flash_efficiency

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
    curves: tuple[CollectiveCurve, ...] = ()  # published sweeps (helixlib.estimate.collectives)
    curve_files: tuple[str, ...] = ()
    protocols: tuple[Protocol, ...] = ()  # NCCL's LL / LL128 / Simple; empty: one protocol (base + hops)
    derived_kinds: dict[str, str] = field(default_factory=dict)  # kind -> the kind whose curve it borrows

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
            "collective_curves": {"files": list(self.curve_files), "curves": [
                {"id": c.id, "kind": c.kind, "ranks": c.ranks, "nodes": c.nodes, "algorithm": c.algorithm,
                 "role": c.role, "points": len(c.sizes)} for c in self.curves]},
            "protocols": [vars(p) for p in self.protocols], "derived_kinds": dict(self.derived_kinds),
            "device": {k: v for k, v in vars(d).items() if k not in ("matmul_measured", "elementwise_measured", "gemm")}
                      | {"gemm": {k: vars(v) for k, v in d.gemm.items()}}
                      | {"measured_matmul_points": {k: len(v) for k, v in d.matmul_measured.items()},
                         "measured_elementwise_points": {k: {kind: len(rows) for kind, rows in v.items()}
                                                         for k, v in d.elementwise_measured.items()}},
        }


# ---- loading -----------------------------------------------------------------------------

_DEVICE_FIELDS = ("kind", "name", "memory_bytes", "reserved_bytes", "matmul_flops", "vector_flops",
                  "memory_bandwidth", "matmul_efficiency", "matmul_half_dim", "memory_efficiency",
                  "flash_efficiency", "launch_overhead_s", "source")
_DEVICE_OPTIONAL = ("matmul_measured", "elementwise_measured", "matmul_shape", "flash_causal_efficiency",
                    "flash_backward_efficiency")
_CLUSTER_FIELDS = ("kind", "name", "device", "gpus_per_node", "base_latency_s", "intra_node", "inter_node",
                   "communicator_bytes", "source")
_CLUSTER_OPTIONAL = ("collectives", "collective_curves", "protocols", "derive_kinds")
_LINK_FIELDS = ("bandwidth", "efficiency", "hop_latency_s")


def device_from_dict(raw: dict, where: str = "") -> Device:
    p = f"{where}." if where else ""
    raw = fields.preset(where, raw, "device", _DEVICE_FIELDS, _DEVICE_OPTIONAL)
    peaks = fields.mapping(p + "matmul_flops", raw["matmul_flops"], (), tuple(DTYPE_BYTES))
    if not peaks:
        raise HelixInputError(p + "matmul_flops", "needs at least one dtype", raw["matmul_flops"])
    dtypes = lambda f: fields.mapping(p + f, raw.get(f) or {}, (), tuple(DTYPE_BYTES)).items()
    measured = {dtype: fields.rows(f"{p}matmul_measured.{dtype}", rows, "M, K, N, FLOP/s")
                for dtype, rows in dtypes("matmul_measured")}
    vector = {}
    for dtype, kinds in dtypes("elementwise_measured"):
        where_dtype = f"{p}elementwise_measured.{dtype}"
        vector[dtype] = {kind: fields.rows(f"{where_dtype}.{kind}", rows, "bytes, B/s")
                         for kind, rows in fields.mapping(where_dtype, kinds, (), ELEMENTWISE_KINDS).items()}
    gemm = {dtype: gemm_from_dict(g, f"{p}matmul_shape.{dtype}") for dtype, g in dtypes("matmul_shape")}
    num = lambda f, **kw: fields.number(p + f, raw[f], **kw)
    optional = lambda f: None if raw.get(f) is None else fields.number(p + f, raw[f], hi=1.0)
    return Device(
        name=str(raw["name"]),
        memory_bytes=num("memory_bytes"),
        reserved_bytes=num("reserved_bytes", lo_open=False),
        matmul_flops={k: fields.number(f"{p}matmul_flops.{k}", v) for k, v in peaks.items()},
        vector_flops=num("vector_flops"),
        memory_bandwidth=num("memory_bandwidth"),
        matmul_efficiency=num("matmul_efficiency", hi=1.0),
        matmul_half_dim=num("matmul_half_dim", lo_open=False),
        memory_efficiency=num("memory_efficiency", hi=1.0),
        flash_efficiency=num("flash_efficiency", hi=1.0),
        launch_overhead_s=num("launch_overhead_s", lo_open=False),
        source=fields.source(p, raw),
        matmul_measured=measured,
        elementwise_measured=vector,
        gemm=gemm,
        flash_causal_efficiency=optional("flash_causal_efficiency"),
        flash_backward_efficiency=optional("flash_backward_efficiency"),
    )


def cluster_from_dict(raw: dict, where: str = "", base: Path = HARDWARE_DIR) -> Cluster:
    """A cluster from its fields; curve files are read relative to ``base`` (the preset's folder)."""
    p = f"{where}." if where else ""
    raw = fields.preset(where, raw, "cluster", _CLUSTER_FIELDS, _CLUSTER_OPTIONAL)
    dev = raw["device"]
    device = device_from_dict(dev, p + "device") if isinstance(dev, dict) else load_device(str(dev))

    def link(name: str) -> Link:
        r = fields.mapping(p + name, raw[name], _LINK_FIELDS)
        return Link(fields.number(f"{p}{name}.bandwidth", r["bandwidth"]),
                    fields.number(f"{p}{name}.efficiency", r["efficiency"], hi=1.0),
                    fields.number(f"{p}{name}.hop_latency_s", r["hop_latency_s"], lo_open=False))

    files = raw.get("collective_curves") or []
    if not isinstance(files, list) or not all(isinstance(f, (str, dict)) for f in files):
        raise HelixInputError(p + "collective_curves", "must be a list of curve files or curves", files)
    curves = tuple(c for i, f in enumerate(files) for c in (
        load_curves(f, base) if isinstance(f, str) else (curve_from_dict(f, f"{p}collective_curves[{i}]"),)))
    derived = fields.mapping(p + "derive_kinds", raw.get("derive_kinds") or {}, (), COLLECTIVE_KINDS)
    for kind, src in derived.items():
        if src != CollectiveKind.ALL_REDUCE or kind not in (CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER):
            raise HelixInputError(f"{p}derive_kinds.{kind}", "only all_gather and reduce_scatter may borrow the "
                                                               "all_reduce curve", src)
    return Cluster(
        name=str(raw["name"]),
        device=device,
        gpus_per_node=positive_int(p + "gpus_per_node", raw["gpus_per_node"]),
        base_latency_s=fields.number(p + "base_latency_s", raw["base_latency_s"], lo_open=False),
        intra_node=link("intra_node"),
        inter_node=link("inter_node"),
        communicator_bytes=fields.number(p + "communicator_bytes", raw["communicator_bytes"], lo_open=False),
        source=fields.source(p, raw),
        collectives=_measured_fits(p, raw.get("collectives") or {}),
        curves=curves,
        curve_files=tuple(f for f in files if isinstance(f, str)),
        protocols=protocols_from_dict(raw["protocols"], p + "protocols") if raw.get("protocols") else (),
        derived_kinds=dict(derived),
    )


def _measured_fits(p: str, raw) -> dict[tuple[str, int], MeasuredCollective]:
    measured = {}
    for kind, by_size in fields.mapping(p + "collectives", raw, (), COLLECTIVE_KINDS).items():
        if not isinstance(by_size, dict) or not by_size:
            raise HelixInputError(f"{p}collectives.{kind}", "must map group sizes to {alpha_s, busbw}", by_size)
        for size, fit in by_size.items():
            where_fit = f"{p}collectives.{kind}.{size}"
            group = positive_int(where_fit, size)
            if group < 2:
                raise HelixInputError(where_fit, "group size must be at least 2", size)
            fit = fields.mapping(where_fit, fit, ("alpha_s", "busbw"))
            measured[(kind, group)] = MeasuredCollective(
                fields.number(where_fit + ".alpha_s", fit["alpha_s"], lo_open=False),
                fields.number(where_fit + ".busbw", fit["busbw"]))
    return measured


def _path(name_or_path: str | Path, kind: str) -> Path:
    return presets.resolve_preset("hardware", name_or_path, HARDWARE_DIR, known=hardware_names(kind),
                                  what=f"{kind} preset")


def load_device(name_or_path: str | Path) -> Device:
    """A device preset by name (``a100-sxm4-80gb``) or YAML path."""
    return device_from_dict(presets.read_yaml("hardware", _path(name_or_path, "device")))


def load_cluster(name_or_path: str | Path) -> Cluster:
    """A cluster preset by name (``dgx-a100``) or YAML path. A device preset is refused with one line
    naming the clusters built from it (a device says nothing about its links)."""
    text = str(name_or_path)
    if isinstance(name_or_path, (str, Path)) and not Path(text).suffix and text in hardware_names("device"):
        raise _device_not_cluster(text)
    path = _path(name_or_path, "cluster")
    return _load_cluster(str(path), _stamp(path), _stamp(HARDWARE_DIR), _stamp(HARDWARE_DIR / "nccl"))


def _stamp(path: Path):
    """A file's or a folder's contents' modification times (None if it is not there)."""
    try:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        return tuple((p.name, p.stat().st_mtime_ns) for p in files)
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _load_cluster(path: str, *stamps) -> Cluster:
    """Parsed once per version of the preset and the files it reads (the design space loads presets often)."""
    return cluster_from_dict(presets.read_yaml("hardware", path), base=Path(path).parent)


def _device_not_cluster(device: str) -> HelixInputError:
    users = clusters_with_device(device)
    return HelixInputError("hardware", f"{device} is a device preset, not a cluster; use a cluster built from it ("
                                       f"{', '.join(users) if users else 'none ships: write one with its links'})",
                           device)
