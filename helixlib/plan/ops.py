"""The records a Plan is made of: operators, communication points, collectives, memory.

Conventions: a matmul ``[M,K]·[K,N]`` is ``2·M·K·N`` FLOPs (2 per multiply-add; a fused bias add
is not counted, as in ``torch.utils.flop_counter``) and moves ``β·(MK + KN + MN)`` bytes. The
element-wise FLOPs per output element are ``helixlib.plan.names.FLOPS_PER_ELEMENT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from helixlib.plan.names import MAPPINGS, CollectiveKind, bus_factor

Shape = tuple[int, ...]

#: decode: the KV cache an append op reads as state (not a weight; counted as ``kv_cache_bytes``)
CACHE_TENSORS = ("k_cache", "v_cache")


def numel(shape: Shape) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class Op:
    """One operator on one rank. ``input_shapes`` lists activations, then parameters."""

    name: str
    kind: str  # an OpKind: matmul | layernorm | softmax | gelu | add
    rank: int
    inputs: tuple[str, ...]  # activation tensor names on this rank
    params: tuple[tuple[str, Shape], ...]
    output: str
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    flops: int
    bytes: int
    gemm: tuple[int, int, int, int] | None = None  # (batch, M, K, N) for kind == "matmul"

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "kind": self.kind,
            "rank": self.rank,
            "inputs": list(self.inputs),
            "params": [p for p, _ in self.params],
            "input_shapes": [list(s) for s in self.input_shapes],
            "output": self.output,
            "output_shape": list(self.output_shape),
            "flops": self.flops,
            "bytes": self.bytes,
        }
        if self.gemm is not None:
            d["gemm"] = dict(zip(("batch", "m", "k", "n"), self.gemm))
        return d


@dataclass(frozen=True)
class CommPoint:
    """A communication point in one rank's program (a Megatron-style mapping)."""

    name: str
    mapping: str
    group: str  # mesh dim: "dim_segment", "head_group" or "world"
    rank: int
    ranks: tuple[int, ...]  # this rank's process group
    input: str
    output: str
    input_shape: Shape
    output_shape: Shape
    dim: int | None = None  # concatenation dim of an all-gather
    dtype_bytes: int | None = None  # bytes per element moved, when not the model's (the fp32 LSE)

    @property
    def forward_kind(self) -> str | None:
        return MAPPINGS[self.mapping][0]

    @property
    def backward_kind(self) -> str | None:
        return MAPPINGS[self.mapping][1]

    @property
    def full_shape(self) -> Shape:
        """The buffer a collective moves, nccl-tests' "size": the gathered / reduced tensor."""
        return self.output_shape if numel(self.output_shape) >= numel(self.input_shape) else self.input_shape


@dataclass(frozen=True)
class Collective:
    """One collective call on one process group. ``elements`` is the full buffer
    (the all-reduced tensor, the gathered output, the reduce-scattered input)."""

    index: int
    name: str
    kind: CollectiveKind
    phase: str  # a Phase: forward | backward
    group: str
    ranks: tuple[int, ...]
    elements: int
    dtype_bytes: int
    shape: Shape

    @property
    def bytes(self) -> int:
        return self.elements * self.dtype_bytes

    @property
    def bus_factor(self) -> float:
        """nccl-tests bus factor: bytes each rank sends = bus_factor × bytes (ring algorithms)."""
        return bus_factor(self.kind, len(self.ranks))

    @property
    def bytes_sent_per_rank(self) -> int:
        return round(self.bus_factor * self.bytes)

    def signature(self) -> tuple:
        """What a recorded trace must reproduce: (phase, name, kind, ranks, elements)."""
        return (self.phase, self.name, self.kind, self.ranks, self.elements)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "phase": self.phase,
            "group": self.group,
            "ranks": list(self.ranks),
            "elements": self.elements,
            "dtype_bytes": self.dtype_bytes,
            "bytes": self.bytes,
            "bytes_sent_per_rank": self.bytes_sent_per_rank,
            "shape": list(self.shape),
        }


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds for one block (nothing freed, no recompute: what autograd keeps).

    The score tensors (the outputs of ``scores``, its all-reduce and ``softmax``: [B, h_g, L, L]
    in prefill) count as ``score_bytes``; other operator outputs as ``activation_bytes``; other
    collective outputs as ``buffer_bytes`` (receive buffers); in decode the KV cache after this
    step's append as ``kv_cache_bytes``.
    """

    rank: int
    weights_bytes: int
    activation_bytes: int
    score_bytes: int
    buffer_bytes: int
    kv_cache_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.score_bytes + self.buffer_bytes + self.kv_cache_bytes

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "weights_bytes": self.weights_bytes,
            "activation_bytes": self.activation_bytes,
            "score_bytes": self.score_bytes,
            "buffer_bytes": self.buffer_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "total_bytes": self.total_bytes,
        }


