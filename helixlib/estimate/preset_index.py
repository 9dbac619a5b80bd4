"""Which presets ``data/hardware`` holds, and of what kind: read once per state of the folder."""

from __future__ import annotations

import functools

from helixlib.core import presets
from helixlib.core.presets import HARDWARE_DIR


def hardware_names(kind: str | None = None) -> list[str]:
    """Preset names under data/hardware (``kind`` = "device" or "cluster" to filter)."""
    return [name for name, k in _kinds(_folder_stamp()) if kind is None or k == kind]


def _folder_stamp() -> tuple:
    return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(HARDWARE_DIR.glob("*.yaml")))


@functools.lru_cache(maxsize=8)
def _kinds(stamp: tuple) -> tuple[tuple[str, str | None], ...]:
    """(name, kind) of every preset, read once per state of the folder."""
    out = []
    for name in presets.preset_names(HARDWARE_DIR):
        raw = presets.read_yaml("hardware", HARDWARE_DIR / f"{name}.yaml")
        out.append((name, raw.get("kind") if isinstance(raw, dict) else None))
    return tuple(out)


def clusters_with_device(device: str) -> list[str]:
    """The cluster presets built from the device preset ``device``."""
    out = []
    for name in hardware_names("cluster"):
        raw = presets.read_yaml("hardware", HARDWARE_DIR / f"{name}.yaml")
        dev = raw.get("device")
        if dev == device or (isinstance(dev, dict) and dev.get("name") == device):
            out.append(name)
    return out
