"""Strict readers for the fields of a hardware preset: each problem is one
:class:`~helixlib.core.errors.HelixInputError` naming the field (the CLI prints one line).

YAML 1.1 reads ``3e9`` as a string, so numbers given as strings are parsed."""

from __future__ import annotations

import math

from helixlib.core.errors import HelixInputError

#: every figure of a preset is 0 or has a magnitude in this window (seconds, bytes, B/s, FLOP/s,
#: fractions): wider than any real hardware, narrow enough that no estimate overflows to inf or NaN
MAGNITUDE = (1e-9, 1e18)


def number(where: str, value, lo: float = 0.0, hi: float = math.inf, lo_open: bool = True) -> float:
    """A finite number in (lo, hi] (or [lo, hi] when ``lo_open`` is false), 0 or within
    :data:`MAGNITUDE`."""
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


def mapping(where: str, raw, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """``raw`` as a mapping holding every ``required`` field and nothing outside ``required + optional``."""
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


def rows(where: str, value, columns: str) -> tuple[tuple[float, ...], ...]:
    """A non-empty list of rows of positive numbers, ``columns`` (e.g. "bytes, B/s") each."""
    width = len(columns.split(","))
    if not isinstance(value, list) or not value:
        raise HelixInputError(where, f"must be a list of [{columns}] rows", value)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != width:
            raise HelixInputError(f"{where}[{i}]", f"must be [{columns}]", row)
    return tuple(tuple(number(f"{where}[{i}]", x) for x in row) for i, row in enumerate(value))


def preset(where: str, raw, kind: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """A preset's mapping of ``kind`` ("device" or "cluster"): the kind is checked first, so a preset
    of the other kind is named as such rather than by the first field it does not have."""
    prefix = f"{where}." if where else ""
    if isinstance(raw, dict) and "kind" in raw:
        require_kind(prefix, raw, kind)
    raw = mapping(where, raw, required, optional)
    require_kind(prefix, raw, kind)
    return raw


def require_kind(prefix: str, raw: dict, kind: str) -> None:
    if raw["kind"] != kind:
        raise HelixInputError(prefix + "kind", f"must be {kind}", raw["kind"])


def source(prefix: str, raw: dict, field: str = "source") -> str:
    """The (non-empty) text saying where the figures come from."""
    if not isinstance(raw[field], str) or not raw[field].strip():
        raise HelixInputError(prefix + field, "must say where the figures come from", raw[field])
    return raw[field]


def text(where: str, value, default: str = "") -> str:
    """An optional free-text field (a note, a label)."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise HelixInputError(where, "must be text", value)
    return value
