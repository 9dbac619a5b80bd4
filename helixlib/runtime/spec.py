"""What a distributed run is asked to do (:class:`RunSpec`, sent to every rank) and the failure
it may be asked to inject (:class:`Fault`, for testing how failures are reported)."""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.core.errors import HelixInputError, bounded_number, one_of, positive_int
from helixlib.core.units import si
from helixlib.plan import ModelConfig, Partition, Plan, build_plan
from helixlib.plan.model import RUNTIME_DTYPES
from helixlib.plan.names import Phase, StepPhase

FAULT_KINDS = ("raise", "hang", "crash")
START_METHODS = ("forkserver", "fork", "spawn")  # of the local launcher
DEVICES = ("auto", "cpu", "cuda")
#: seconds a collective (or a whole local run) may take: below 1 s gloo's own start-up counts as a
#: hang; above a day a hang is not worth waiting for (and torch's millisecond timers overflow near 1e300)
TIMEOUT_RANGE_S = (1.0, 86400.0)
#: processes the local launcher starts at most (each holds the torch runtime, a few hundred MB)
MAX_LOCAL_RANKS = 64


@dataclass(frozen=True)
class Fault:
    """Injected failure, for testing failure handling: on ``rank``, just before the
    collective called ``at`` (a plan name, e.g. "scores_allreduce" or "fc1_input.backward"),
    raise an error, hang forever, or crash (the process exits at once, no traceback)."""

    rank: int
    at: str
    kind: str = "raise"

    def __post_init__(self):
        object.__setattr__(self, "rank", positive_int("fault.rank", self.rank, minimum=0))
        if not isinstance(self.at, str) or not self.at:
            raise HelixInputError("fault.at", "must name a collective of the plan", self.at)
        one_of("fault.kind", self.kind, FAULT_KINDS)

    def check(self, plan: Plan, backward: bool) -> None:
        """A fault that can never fire is an error: the rank must exist and call ``at``."""
        if self.rank >= plan.world_size:
            raise HelixInputError("fault.rank", f"must be a rank of the run, 0..{plan.world_size - 1}", self.rank)
        names = [c.name for c in plan.collectives_for_rank(self.rank, None if backward else Phase.FORWARD)]
        if self.at not in names:
            raise HelixInputError("fault.at", f"rank {self.rank} calls no such collective"
                                              f"{'' if backward else ' (forward only)'}; it calls: "
                                              f"{', '.join(dict.fromkeys(names)) or 'none'}", self.at)


@dataclass(frozen=True)
class RunSpec:
    """Everything a rank needs to know (picklable; sent to every process)."""

    model: ModelConfig  # its dtype is the run's dtype
    partition: Partition
    seed: int = 0
    backward: bool = True
    verify: bool = True
    device: str = "auto"  # auto | cpu | cuda
    collective_timeout_s: float = 60.0
    warmup: int = 0  # untimed steps before the recorded one
    threads_per_rank: int | None = None  # torch intra-op threads; None: cores / local ranks
    fault: Fault | None = None
    phase: str = "prefill"  # prefill | decode (helixlib.plan.StepPhase)
    steps: int = 1  # decode: tokens generated per sequence

    def __post_init__(self):
        if not isinstance(self.model, ModelConfig):
            raise HelixInputError("model", "must be a ModelConfig (load_model gives one)", type(self.model).__name__)
        if not isinstance(self.partition, Partition):
            raise HelixInputError("partition", "must be a Partition", type(self.partition).__name__)
        object.__setattr__(self, "seed", positive_int("seed", self.seed, minimum=0))
        object.__setattr__(self, "warmup", positive_int("warmup", self.warmup, minimum=0))
        if self.threads_per_rank is not None:
            object.__setattr__(self, "threads_per_rank", positive_int("threads_per_rank", self.threads_per_rank))
        for flag in ("backward", "verify"):
            if not isinstance(getattr(self, flag), bool):
                raise HelixInputError(flag, "must be true or false", getattr(self, flag))
        one_of("device", self.device, DEVICES)
        if self.model.dtype not in RUNTIME_DTYPES:
            raise HelixInputError("dtype", f"the torch runtime runs {', '.join(RUNTIME_DTYPES)} "
                                           "(fp8 is for the estimator)", self.model.dtype)
        timeout = bounded_number("collective_timeout_s", self.collective_timeout_s, *TIMEOUT_RANGE_S, "seconds")
        object.__setattr__(self, "collective_timeout_s", timeout)
        if self.fault is not None and not isinstance(self.fault, Fault):
            raise HelixInputError("fault", "must be a Fault or None", self.fault)
        object.__setattr__(self, "phase", StepPhase(one_of("phase", self.phase, tuple(StepPhase))))
        object.__setattr__(self, "steps", positive_int("steps", self.steps))
        # what the model decides (kv_share, tokens_per_block), so every rank builds the same groups
        object.__setattr__(self, "partition", self.partition.resolve(self.model))

    def check_fault(self, plan: Plan) -> None:
        """Raise if the injected fault (if any) could never fire in ``plan``."""
        if self.fault is not None:
            self.fault.check(plan, self.backward)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "partition": self.partition.to_dict(), "seed": self.seed,
                "backward": self.backward, "verify": self.verify, "device": self.device,
                "collective_timeout_s": self.collective_timeout_s, "warmup": self.warmup,
                "threads_per_rank": self.threads_per_rank, "phase": str(self.phase), "steps": self.steps,
                "fault": None if self.fault is None else {"rank": self.fault.rank, "at": self.fault.at,
                                                          "kind": self.fault.kind}}


def memory_needed(spec: RunSpec, plan: Plan) -> int:
    """Bytes a local run of ``plan`` needs at least: in every rank the full block's weights and
    input (each rank initialises them, then keeps its shard) and the Plan's tensors of that rank,
    twice with backward (gradients); on rank 0 the dense fp64 reference, also twice with backward."""
    m, twice = plan.model, 2 if spec.backward else 1
    full = m.params_per_block * m.dtype_bytes + 2 * m.batch * m.seq_len * m.hidden * m.dtype_bytes
    need = sum(full + twice * r.total_bytes for r in plan.memory())
    if spec.verify:
        need += twice * build_plan(m.replace(dtype="fp64"), Partition(1, 1)).memory()[0].total_bytes
    return need


def check_local_run(spec: RunSpec, plan: Plan) -> None:
    """What the local launcher checks before starting a process: the fault can fire, the number
    of processes, and (on the CPU) the memory the run needs against what is available."""
    import psutil

    spec.check_fault(plan)
    if plan.world_size > MAX_LOCAL_RANKS:
        raise HelixInputError("world_size", f"the local launcher starts at most {MAX_LOCAL_RANKS} processes "
                                            "(use torchrun for more)", plan.world_size)
    need, have = memory_needed(spec, plan), psutil.virtual_memory().available
    if spec.device != "cuda" and need > have:
        raise HelixInputError("memory", f"the run needs at least {si(need, 'B')} ({plan.world_size} ranks"
                                        f"{' and the dense reference' if spec.verify else ''}); "
                                        f"{si(have, 'B')} is available: reduce seq_len or batch")
