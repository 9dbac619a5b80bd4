"""The two-level partition: ``n`` head groups × ``m`` head-dimension segments.

Rank layout is row-major, ``rank = g·m + s`` — exactly
``init_device_mesh(dev, (n, m), mesh_dim_names=("head_group", "dim_segment"))``.
Careful with the mesh names: ``mesh.get_group("dim_segment")`` is the *m* ranks that
share head group ``g`` (they hold different dim segments); ``mesh.get_group("head_group")``
is the *n* ranks that share dim segment ``s``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.core.numbers import factor_pairs
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import MESH_DIM_NAMES, OUTPUT_MODES, QK_MODES, MeshDim, OutputMode, QkMode

SEGMENT_LOCAL = QkMode.SEGMENT_LOCAL
__all__ = ["MESH_DIM_NAMES", "OUTPUT_MODES", "QK_MODES", "SEGMENT_LOCAL", "Partition", "factorisations",
           "valid_partitions"]


@dataclass(frozen=True)
class Partition:
    """n head groups × m dim segments, plus the two dataflow variants.

    ``qk_mode``: ``reduce_scores`` all-reduces the partial Q·Kᵀ over the dim_segment
    group before softmax; ``gather_qk`` all-gathers the Q and K segments instead;
    ``segment_local`` (incorrect, for demonstration) reduces nothing.
    ``output``: ``allreduce`` is a row-parallel out-projection (Megatron);
    ``concat`` is the deployment plan's literal dataflow (concat within the group, then
    across groups, then a tensor-parallel out-projection).
    """

    head_groups: int  # n
    dim_segments: int  # m
    qk_mode: QkMode = QkMode.REDUCE_SCORES
    output: OutputMode = OutputMode.ALLREDUCE

    def __post_init__(self):
        object.__setattr__(self, "head_groups", positive_int("head_groups", self.head_groups))
        object.__setattr__(self, "dim_segments", positive_int("dim_segments", self.dim_segments))
        object.__setattr__(self, "qk_mode", QkMode(one_of("qk_mode", self.qk_mode, tuple(QkMode))))
        object.__setattr__(self, "output", OutputMode(one_of("output", self.output, OUTPUT_MODES)))

    def to_dict(self) -> dict:
        """Plain JSON-able fields (the inverse of :meth:`from_dict`)."""
        return {"head_groups": self.head_groups, "dim_segments": self.dim_segments,
                "qk_mode": str(self.qk_mode), "output": str(self.output)}

    @classmethod
    def from_dict(cls, d: dict) -> Partition:
        return cls(d["head_groups"], d["dim_segments"], d.get("qk_mode", QkMode.REDUCE_SCORES),
                   d.get("output", OutputMode.ALLREDUCE))

    @property
    def label(self) -> str:
        """``n x m``, as tables and rankings name a partition (``4x4``)."""
        return f"{self.head_groups}x{self.dim_segments}"

    def build_mesh(self, device_type: str, backend_override: dict | None = None):
        """The ``(n, m)`` DeviceMesh named ``("head_group", "dim_segment")`` of an initialised
        process group of n·m ranks (torchtitan's ``ParallelDims.build_mesh``). ``backend_override``
        (mesh dim -> (backend, options)) goes to ``init_device_mesh``: the sub-groups' timeout."""
        from torch.distributed.device_mesh import init_device_mesh

        return init_device_mesh(device_type, (self.head_groups, self.dim_segments), mesh_dim_names=MESH_DIM_NAMES,
                                backend_override=backend_override)

    @property
    def exact(self) -> bool:
        """False for the deliberately wrong ``segment_local`` dataflow."""
        return self.qk_mode != SEGMENT_LOCAL

    @property
    def world_size(self) -> int:
        """G = n·m."""
        return self.head_groups * self.dim_segments

    def coords(self, rank: int) -> tuple[int, int]:
        """rank -> (head_group g, dim_segment s), row-major."""
        return divmod(rank, self.dim_segments)

    def rank(self, g: int, s: int) -> int:
        """(g, s) -> rank = g·m + s."""
        return g * self.dim_segments + s

    def group_ranks(self, dim: str, rank: int) -> list[int]:
        """Ranks of ``rank``'s process group along mesh dim ``dim`` ("head_group", "dim_segment" or "world")."""
        g, s = self.coords(rank)
        if dim == MeshDim.DIM_SEGMENT:  # same head group, every segment
            return [self.rank(g, t) for t in range(self.dim_segments)]
        if dim == MeshDim.HEAD_GROUP:  # same segment, every head group
            return [self.rank(h, s) for h in range(self.head_groups)]
        if dim == MeshDim.WORLD:
            return list(range(self.world_size))
        raise HelixInputError("group", "must be head_group, dim_segment or world", dim)

    def groups(self, dim: str) -> list[list[int]]:
        """All distinct process groups along ``dim``, in the order DeviceMesh creates them."""
        return [list(g) for g in _group_table(self, dim)[0]]

    def group_of(self, dim: str, rank: int) -> tuple[int, ...]:
        """:meth:`group_ranks` as one tuple shared by every member of the group: building every
        rank's program costs O(G), not O(G x group size) (the world group made that O(G²))."""
        groups, index = _group_table(self, dim)
        return groups[index[rank]]

    def validate(self, model: ModelConfig, world_size: int | None = None) -> Partition:
        """Check this partition fits ``model`` (and a launch of ``world_size`` ranks); return self."""
        n, m, G = self.head_groups, self.dim_segments, self.world_size
        model.require_standard_attention("the head-dim partition")
        if world_size is not None:
            world_size = positive_int("world_size", world_size)
            if world_size != G:
                raise HelixInputError(
                    "world_size", f"must equal head_groups x dim_segments = {n}x{m} = {G}", world_size
                )
        if model.heads % n:
            raise HelixInputError("head_groups", f"must divide heads ({model.heads})", n)
        if model.head_dim % m:
            raise HelixInputError("dim_segments", f"must divide head_dim ({model.head_dim})", m)
        # n | H and m | d make n·m | H·d = D, so output=concat's D/G split needs no check
        if model.mlp_hidden % G:
            raise HelixInputError(
                "mlp_hidden", f"must be divisible by world size {G} (FC1/FC2 are split G ways)", model.mlp_hidden
            )
        return self


@functools.lru_cache(maxsize=64)
def _group_table(part: Partition, dim: str) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The distinct groups along ``dim`` (first-appearance order) and each rank's index into them;
    each group is built once (the groups of one dim partition the ranks)."""
    groups: list[tuple[int, ...]] = []
    index = [-1] * part.world_size
    for r in range(part.world_size):
        if index[r] < 0:
            g = tuple(part.group_ranks(dim, r))
            for x in g:
                index[x] = len(groups)
            groups.append(g)
    return tuple(groups), tuple(index)


def factorisations(world_size: int) -> list[tuple[int, int]]:
    """Every (n, m) with n·m = world_size, n ascending."""
    return factor_pairs(positive_int("world_size", world_size))


def valid_partitions(model: ModelConfig, world_size: int, **variants) -> list[Partition]:
    """The factorisations of ``world_size`` that ``model`` admits, as Partitions."""
    out = []
    for n, m in factorisations(world_size):
        p = Partition(n, m, **variants)
        try:
            p.validate(model)
        except HelixInputError:
            continue
        out.append(p)
    return out
