"""The Plan: one pre-LN transformer block split over n head groups × (m dim segments or p KV
shards), for one step of a phase: prefill (the whole sequence; forward, and backward for
training) or decode (one new token per sequence against a KV cache).

A ``Plan`` is computed from ``(ModelConfig, Partition, phase)`` and is the single source of
truth of the workbook: per-rank shards, the per-rank program (operators and communication
points, :mod:`helixlib.plan.program`, :mod:`helixlib.plan.kv_program`), the ordered collectives
(forward, then backward, then the gradient syncs of shared weights) and the memory per rank. The
DAG, the estimator, the distributed layer's trace and the audit are all compared against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.core.errors import HelixInputError
from helixlib.plan.kv_program import grad_sync_points
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import Phase, StepPhase
from helixlib.plan.ops import CACHE_TENSORS, Collective, CommPoint, Op, RankMemory, numel
from helixlib.plan.partition import Partition
from helixlib.plan.program import rank_program
from helixlib.plan.shards import Shard, make_shards

#: the steps whose outputs are score-shaped ([B, h_g, L_q, L_k]): counted as ``score_bytes``
SCORE_STEPS = ("scores", "scores_allreduce", "softmax")

#: the most ranks a Plan is built for (`plan` takes about 7 s and 140 MB per 8192 ranks on a 2-core CPU)
MAX_PLAN_RANKS = 16384


@dataclass(frozen=True)
class Plan:
    """Everything about one (model, partition, phase step): shards, programs, collectives, memory."""

    model: ModelConfig
    partition: Partition
    shards: list[Shard]
    programs: list[list[Op | CommPoint]]  # index = rank
    collectives: list[Collective]  # forward in call order, then backward, then gradient syncs
    phase: StepPhase = StepPhase.PREFILL
    step: int = 0  # decode: the step (the cache holds seq_len + step positions before it)
    grad_syncs: tuple[tuple[CommPoint, ...], ...] = ()  # per rank: after backward, shared weights

    @property
    def world_size(self) -> int:
        return self.partition.world_size

    @property
    def context(self) -> int:
        """KV positions cached before this step: seq_len (+ step in decode)."""
        return self.model.seq_len + self.step

    @property
    def tokens(self) -> int:
        """Query tokens per sequence in this step: L in prefill, 1 in decode."""
        return 1 if self.phase == StepPhase.DECODE else self.model.seq_len

    @property
    def ops(self) -> list[Op]:
        """All operators, rank-major, in program order."""
        return [s for prog in self.programs for s in prog if isinstance(s, Op)]

    def rank_ops(self, rank: int) -> list[Op]:
        return [s for s in self.programs[rank] if isinstance(s, Op)]

    def rank_comms(self, rank: int) -> list[CommPoint]:
        return [s for s in self.programs[rank] if isinstance(s, CommPoint)]

    def collectives_for_rank(self, rank: int, phase: str | None = None) -> list[Collective]:
        """The collectives ``rank`` takes part in, in the order it calls them."""
        return [c for c in self.collectives if rank in c.ranks and (phase is None or c.phase == phase)]

    def rank_flops(self, rank: int, kind: str | None = None) -> int:
        return sum(o.flops for o in self.rank_ops(rank) if kind is None or o.kind == kind)

    def op(self, rank: int, name: str) -> Op:
        for o in self.rank_ops(rank):
            if o.name == name:
                return o
        raise KeyError(f"rank {rank} has no op {name!r}")

    def memory(self) -> list[RankMemory]:
        """Per-rank bytes for one block (see RankMemory for what counts where)."""
        beta = self.model.dtype_bytes
        out = []
        for r, prog in enumerate(self.programs):
            weights = act = scores = buffers = cache = 0
            for op in self.rank_ops(r):
                weights += sum(numel(s) for p, s in op.params if p not in CACHE_TENSORS) * beta
            for step in prog:
                size = numel(step.output_shape) * beta
                if step.name.split(".")[0] in SCORE_STEPS:
                    scores += size
                elif isinstance(step, Op) and any(p in CACHE_TENSORS for p, _ in step.params):
                    cache += size
                elif isinstance(step, Op):
                    act += size
                elif step.output != step.input:
                    buffers += numel(step.output_shape) * (step.dtype_bytes or beta)
            out.append(RankMemory(r, weights, act, scores, buffers, cache))
        return out

    def to_dict(self, checks: list | None = None) -> dict:
        from helixlib.plan.kv_summary import kv_summary

        d = {
            "model": self.model.to_dict(),
            "partition": self.partition.to_dict(),
            "world_size": self.world_size,
            "phase": str(self.phase),
            "ranks": [s.to_dict() for s in self.shards],
            "ops": [o.to_dict() for o in self.ops],
            "collectives": [c.to_dict() for c in self.collectives],
            "memory": [m.to_dict() for m in self.memory()],
            "kv": kv_summary(self),
        }
        if self.phase == StepPhase.DECODE:
            d.update(step=self.step, context=self.context)
        if checks is not None:
            d["checks"] = [c.to_dict() for c in checks]
        return d


def _collectives(part: Partition, programs: list[list[Op | CommPoint]], syncs, dtype_bytes: int,
                 backward: bool) -> list[Collective]:
    """Every rank runs the same program, so step i is the same communication point on
    every rank; one Collective per distinct process group of that point. Backward runs
    the points in reverse (autograd visits a chain backwards); the gradient syncs of shared
    weights come last (after backward, as DDP's)."""
    G = part.world_size
    points = [[s for s in programs[r] if isinstance(s, CommPoint)] for r in range(G)]
    out: list[Collective] = []

    def emit(per_rank: list[CommPoint], phase: str, kind: str | None, name: str):
        if kind is None:
            return
        for group in part.groups(per_rank[0].group):  # one per group, its first member's point: O(G)
            c = per_rank[group[0]]
            full = c.full_shape
            out.append(Collective(len(out), name, kind, phase, c.group, c.ranks, numel(full),
                                  c.dtype_bytes or dtype_bytes, full))

    for i, c in enumerate(points[0]):
        emit([points[r][i] for r in range(G)], Phase.FORWARD, c.forward_kind, c.name)
    if backward:
        for i in reversed(range(len(points[0]))):
            c = points[0][i]
            emit([points[r][i] for r in range(G)], Phase.BACKWARD, c.backward_kind, f"{c.name}.backward")
        for i, c in enumerate(syncs[0]):
            emit([syncs[r][i] for r in range(G)], Phase.BACKWARD, c.backward_kind, c.name)
    return out


def check_phase(model: ModelConfig, part: Partition, phase: str) -> StepPhase:
    """``phase`` as a StepPhase, and what it needs of the model and the partition."""
    if phase not in tuple(StepPhase):
        raise HelixInputError("phase", f"must be one of {', '.join(StepPhase)}", phase)
    if phase == StepPhase.DECODE and not model.causal:
        raise HelixInputError("causal", "decode appends one token after the cache: it needs a causal model", False)
    if part.hop_b > 1 and phase != StepPhase.DECODE:
        raise HelixInputError("hop_b", "overlaps the decode All-to-All with attention: it needs phase decode",
                              part.hop_b)
    if model.batch % part.hop_b:
        raise HelixInputError("hop_b", f"must divide the batch ({model.batch})", part.hop_b)
    return StepPhase(phase)


def build_plan(model: ModelConfig, part: Partition, world_size: int | None = None,
               phase: str = StepPhase.PREFILL, step: int = 0) -> Plan:
    """Validate ``part`` against ``model`` (and ``world_size`` if given) and compute the Plan of
    one ``phase`` step (decode: step ``step``, after ``seq_len + step`` cached positions)."""
    if not isinstance(model, ModelConfig):
        raise HelixInputError("model", "must be a ModelConfig (load_model(name) gives one)", type(model).__name__)
    if not isinstance(part, Partition):
        raise HelixInputError("partition", "must be a Partition", type(part).__name__)
    if part.world_size > MAX_PLAN_RANKS:
        raise HelixInputError("world_size", f"must be at most {MAX_PLAN_RANKS} for a Plan (it holds every rank's "
                                            "program: time and memory grow with the ranks)", part.world_size)
    part = part.validate(model, world_size)
    phase = check_phase(model, part, phase)
    decode = phase == StepPhase.DECODE
    context = model.seq_len + step if decode else model.seq_len
    shards = make_shards(model, part, context)
    programs = [rank_program(model, part, sh, phase, context) for sh in shards]
    syncs = tuple(tuple(grad_sync_points(model, part, sh)) for sh in shards)
    return Plan(model, part, shards, programs, _collectives(part, programs, syncs, model.dtype_bytes, not decode),
                phase, step if decode else 0, syncs)


def decode_plans(model: ModelConfig, part: Partition, steps: int, world_size: int | None = None) -> list[Plan]:
    """The Plans of ``steps`` decode steps in a row (step t after seq_len + t cached positions):
    what a decode loop of that many tokens runs, step by step."""
    from helixlib.core.errors import positive_int

    return [build_plan(model, part, world_size, StepPhase.DECODE, t) for t in range(positive_int("steps", steps))]
