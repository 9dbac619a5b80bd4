"""The named computations a claims file can call (``check:``), and how a claim's ``args`` are
bound to one: by its signature, so an argument the check does not take is bad input (one line)
while a ``TypeError`` raised inside a check stays what it is, a bug."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from helixlib.core.errors import HelixInputError


@dataclass(frozen=True)
class Computed:
    """What a check computed: the value and a one-line account of it."""

    value: object
    detail: str


#: check name -> function(ctx: AuditContext, **args) -> Computed
CHECKS: dict = {}


def check(name: str):
    """Register a computation under ``name``."""
    def register(fn):
        CHECKS[name] = fn
        return fn
    return register


def bind(where: str, name: str, args: dict) -> inspect.BoundArguments:
    """Bind a claim's ``args`` to check ``name`` (the context is bound as ``None`` and replaced
    at call time), or raise HelixInputError naming the claim's ``args``."""
    fn = CHECKS[name]
    try:
        return inspect.signature(fn).bind(None, **args)
    except TypeError as exc:
        params = [p for p in inspect.signature(fn).parameters if p != "ctx"]
        raise HelixInputError(f"{where}.args", f"do not fit check {name} ({exc}; it takes: "
                                               f"{', '.join(params) or 'nothing'})", args) from None


def call(ctx, name: str, bound: inspect.BoundArguments) -> Computed:
    """Run check ``name`` with the arguments :func:`bind` accepted."""
    bound.arguments["ctx"] = ctx
    return CHECKS[name](*bound.args, **bound.kwargs)
