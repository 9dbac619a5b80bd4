"""Numbers as a reader wants them in the notebooks and the explorer (never ``1.48e+03 s``)."""

from __future__ import annotations

from helixlib.core.units import seconds


def duration(value: float) -> str:
    """Seconds, readable at every scale: 0.0123 -> '12.3 ms', 1480 -> '1,480 s (24.7 min)',
    9000 -> '9,000 s (2.50 h)'."""
    if abs(value) < 1000:
        return seconds(value)
    extra = f"{value / 3600:.3g} h" if abs(value) >= 3600 else f"{value / 60:.3g} min"
    return f"{value:,.0f} s ({extra})"


def plural(count: int, noun: str) -> str:
    """'1 head group', '4 head groups'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
