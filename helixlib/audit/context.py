"""The deployment under audit and the results the checks share, computed once."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from helixlib.core.errors import HelixInputError
from helixlib.core.presets import DEFAULT_CLUSTER, DEFAULT_MODEL
from helixlib.plan import OutputMode, Partition, Plan, QkMode, build_plan, load_model


class AuditContext:
    """Model, partition, variants and hardware (from the claims file's ``context``). Plans,
    estimates, DAGs and real runs that several claims need are computed on first use and kept
    in :attr:`cache` (:meth:`cached`)."""

    def __init__(self, context: dict):
        self.context = dict(context)
        self.model = load_model(context.get("model", DEFAULT_MODEL))
        self.partition = Partition(context.get("head_groups", 4), context.get("dim_segments", 4),
                                   context.get("qk_mode", QkMode.REDUCE_SCORES),
                                   context.get("output", OutputMode.CONCAT))
        self.hardware = context.get("hardware", DEFAULT_CLUSTER)
        self.cache: dict[tuple, object] = {}

    def cached(self, key: tuple, compute: Callable[[], object]):
        """``compute()`` once per ``key``; later calls return the kept result."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def plan_for(self, qk_mode: str | None = None, output: str | None = None, head_groups: int | None = None,
                 dim_segments: int | None = None, model=None) -> Plan:
        p = self.partition
        part = Partition(head_groups or p.head_groups, dim_segments or p.dim_segments, qk_mode or p.qk_mode,
                         output or p.output)
        m = self.model if model is None else load_model(model)
        return self.cached(("plan", part, m), lambda: build_plan(m, part))

    @cached_property
    def plan(self) -> Plan:
        return self.plan_for()

    @cached_property
    def checks(self):
        from helixlib.plan.checks import run_checks
        return {c.name: c for c in run_checks(self.plan)}

    # ---- arguments that name something of the Plan: it must exist (one-line error otherwise) --

    @staticmethod
    def index(field: str, value, count: int) -> int:
        """``value`` as an index in ``0..count-1``."""
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise HelixInputError(f"args.{field}", f"must be an integer in 0..{count - 1}", value)
        return value

    @staticmethod
    def step(plan: Plan, rank: int, name: str):
        """The op or communication point called ``name`` in ``rank``'s program."""
        prog = plan.programs[AuditContext.index("rank", rank, plan.world_size)]
        for s in prog:
            if s.name == name:
                return s
        raise HelixInputError("args", f"rank {rank} runs no step {name!r} (it runs: "
                                      f"{', '.join(s.name for s in prog)})", name)

    @staticmethod
    def one_of(field: str, value, allowed) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise HelixInputError(f"args.{field}", f"must be one of {', '.join(map(str, allowed))}", value)
        return value
