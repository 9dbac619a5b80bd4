"""One error type for bad input: it names the field and the rule it broke.

The CLI prints ``str(err)`` as a single line and exits with status 2; library
callers can catch :class:`HelixInputError` (a ``ValueError``) and read
``err.field`` / ``err.rule``.
"""

from __future__ import annotations


class HelixInputError(ValueError):
    """Bad user input: ``field`` broke ``rule`` (``got`` is the offending value)."""

    def __init__(self, field: str, rule: str, got: object = None):
        self.field = field
        self.rule = rule
        self.got = got
        suffix = "" if got is None else f", got {got!r}"
        super().__init__(f"{field}: {rule}{suffix}")


def positive_int(field: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is a whole number >= ``minimum`` (default 1), else
    raise naming ``field``."""
    rule = "must be a positive integer" if minimum == 1 else f"must be an integer >= {minimum}"
    if isinstance(value, bool):
        raise HelixInputError(field, rule, value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise HelixInputError(field, rule, value) from None
    if isinstance(value, float):
        if not value.is_integer():
            raise HelixInputError(field, rule, value)
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise HelixInputError(field, rule, value)
    return value


def one_of(field: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming ``field``."""
    if value not in allowed:
        raise HelixInputError(field, f"must be one of {', '.join(allowed)}", value)
    return value  # type: ignore[return-value]


def bounded_number(field: str, value: object, lo: float, hi: float, unit: str = "") -> float:
    """Return ``value`` as a float if it is a finite number in ``[lo, hi]``, else raise naming
    ``field`` (NaN, infinities and strings that are not numbers included)."""
    rule = f"must be a number{' of ' + unit if unit else ''} from {lo:g} to {hi:g}"
    if isinstance(value, bool):
        raise HelixInputError(field, rule, value)
    try:
        x = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise HelixInputError(field, rule, value) from None
    if not lo <= x <= hi:  # False for NaN too
        raise HelixInputError(field, rule, value)
    return x
