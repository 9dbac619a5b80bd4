"""What a distributed run is asked to do (:class:`RunSpec`, sent to every rank) and the failure
it may be asked to inject (:class:`Fault`, for testing how failures are reported)."""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.core.errors import HelixInputError, one_of
from helixlib.plan import ModelConfig, Partition
from helixlib.plan.model import RUNTIME_DTYPES

FAULT_KINDS = ("raise", "hang", "crash")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Fault:
    """Injected failure, for testing failure handling: on ``rank``, just before the
    collective called ``at`` (a plan name, e.g. "scores_allreduce" or "fc1_input.backward"),
    raise an error, hang forever, or crash (the process exits at once, no traceback)."""

    rank: int
    at: str
    kind: str = "raise"

    def __post_init__(self):
        one_of("fault.kind", self.kind, FAULT_KINDS)


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
        one_of("device", self.device, DEVICES)
        if self.model.dtype not in RUNTIME_DTYPES:
            raise HelixInputError("dtype", f"the torch runtime runs {', '.join(RUNTIME_DTYPES)} "
                                           "(fp8 is for the estimator)", self.model.dtype)
        if self.collective_timeout_s <= 0:
            raise HelixInputError("collective_timeout_s", "must be positive", self.collective_timeout_s)
        # what the model decides (kv_share, tokens_per_block), so every rank builds the same groups
        object.__setattr__(self, "partition", self.partition.resolve(self.model))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "partition": self.partition.to_dict(), "seed": self.seed,
                "backward": self.backward, "verify": self.verify, "device": self.device,
                "collective_timeout_s": self.collective_timeout_s, "warmup": self.warmup,
                "threads_per_rank": self.threads_per_rank, "phase": self.phase, "steps": self.steps,
                "fault": None if self.fault is None else {"rank": self.fault.rank, "at": self.fault.at,
                                                          "kind": self.fault.kind}}
