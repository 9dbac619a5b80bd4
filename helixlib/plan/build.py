"""The Plan: one pre-LN transformer block split over n head groups × m dim segments.

A ``Plan`` is computed from ``(ModelConfig, Partition)`` and is the single source of
truth of the workbook: per-rank shards, the per-rank program (operators and
communication points, :mod:`helixlib.plan.program`), the ordered collectives (forward
and backward) and the memory per rank. The DAG, the estimator, the distributed layer's
trace and the audit are all compared against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.core.errors import HelixInputError
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import Phase
from helixlib.plan.ops import Collective, CommPoint, Op, RankMemory, numel
from helixlib.plan.partition import Partition
from helixlib.plan.program import rank_program
from helixlib.plan.shards import Shard, make_shards

#: the most ranks a Plan is built for (`plan` takes about 7 s and 140 MB per 8192 ranks on a 2-core CPU)
MAX_PLAN_RANKS = 16384


@dataclass(frozen=True)
class Plan:
    """Everything about one (model, partition): shards, programs, collectives, memory."""

    model: ModelConfig
    partition: Partition
    shards: list[Shard]
    programs: list[list[Op | CommPoint]]  # index = rank
    collectives: list[Collective]  # forward in call order, then backward in call order

    @property
    def world_size(self) -> int:
        return self.partition.world_size

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
            weights = act = scores = buffers = 0
            for op in self.rank_ops(r):
                weights += sum(numel(s) for _, s in op.params) * beta
            for step in prog:
                size = numel(step.output_shape) * beta
                if len(step.output_shape) == 4 and step.output_shape[2:] == (self.model.seq_len,) * 2:
                    scores += size
                elif isinstance(step, Op):
                    act += size
                elif step.output != step.input:
                    buffers += size
            out.append(RankMemory(r, weights, act, scores, buffers))
        return out

    def to_dict(self, checks: list | None = None) -> dict:
        d = {
            "model": self.model.to_dict(),
            "partition": self.partition.to_dict(),
            "world_size": self.world_size,
            "ranks": [s.to_dict() for s in self.shards],
            "ops": [o.to_dict() for o in self.ops],
            "collectives": [c.to_dict() for c in self.collectives],
            "memory": [m.to_dict() for m in self.memory()],
        }
        if checks is not None:
            d["checks"] = [c.to_dict() for c in checks]
        return d


def _collectives(part: Partition, programs: list[list[Op | CommPoint]], dtype_bytes: int) -> list[Collective]:
    """Every rank runs the same program, so step i is the same communication point on
    every rank; one Collective per distinct process group of that point. Backward runs
    the points in reverse (autograd visits a chain backwards)."""
    G = part.world_size
    points = [[s for s in programs[r] if isinstance(s, CommPoint)] for r in range(G)]
    out: list[Collective] = []

    def emit(i: int, phase: str, kind: str | None, name: str):
        if kind is None:
            return
        for group in part.groups(points[0][i].group):  # one per group, first member's point: O(G)
            c = points[group[0]][i]
            full = c.full_shape
            out.append(Collective(len(out), name, kind, phase, c.group, c.ranks, numel(full), dtype_bytes, full))

    for i, c in enumerate(points[0]):
        emit(i, Phase.FORWARD, c.forward_kind, c.name)
    for i in reversed(range(len(points[0]))):
        c = points[0][i]
        emit(i, Phase.BACKWARD, c.backward_kind, f"{c.name}.backward")
    return out


def build_plan(model: ModelConfig, part: Partition, world_size: int | None = None) -> Plan:
    """Validate ``part`` against ``model`` (and ``world_size`` if given) and compute the Plan."""
    if not isinstance(model, ModelConfig):
        raise HelixInputError("model", "must be a ModelConfig (load_model(name) gives one)", type(model).__name__)
    if not isinstance(part, Partition):
        raise HelixInputError("partition", "must be a Partition", type(part).__name__)
    if part.world_size > MAX_PLAN_RANKS:
        raise HelixInputError("world_size", f"must be at most {MAX_PLAN_RANKS} for a Plan (it holds every rank's "
                                            "program: time and memory grow with the ranks)", part.world_size)
    part.validate(model, world_size)
    shards = make_shards(model, part)
    programs = [rank_program(model, part, sh) for sh in shards]
    return Plan(model, part, shards, programs, _collectives(part, programs, model.dtype_bytes))
