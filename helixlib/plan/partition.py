"""The two-level partition: ``n`` head groups × a second level, either ``m`` head-dimension
segments or ``p`` KV-sequence shards (Helix Parallelism, Bhatia et al., arXiv 2507.07120).

Rank layout is row-major with the second level innermost, ``rank = g·m + s`` (or ``g·p + j``) —
exactly ``init_device_mesh(dev, (n, m), mesh_dim_names=("head_group", "dim_segment"))`` (or
``("head_group", "kv_shard")``). Careful with the mesh names: ``mesh.get_group("dim_segment")``
is the *m* ranks that share head group ``g`` (they hold different dim segments);
``mesh.get_group("head_group")`` is the *n* ranks that share dim segment ``s``. TensorRT-LLM's
Helix mapping orders the other way round (``tp_rank = rank % tp_size``, KV shards outer); here the
All-to-All group, the only attention collective of a KV-shard plan, is the contiguous one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.core.numbers import factor_pairs
from helixlib.plan import kv_layout
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import (
    KV_MESH_DIM_NAMES,
    MESH_DIM_NAMES,
    OUTPUT_MODES,
    QK_MODES,
    KvPlacement,
    MeshDim,
    OutputMode,
    QkMode,
    SecondLevel,
)

SEGMENT_LOCAL = QkMode.SEGMENT_LOCAL
__all__ = ["MESH_DIM_NAMES", "OUTPUT_MODES", "QK_MODES", "SEGMENT_LOCAL", "Partition", "factorisations",
           "valid_partitions"]


@dataclass(frozen=True)
class Partition:
    """n head groups × (m dim segments or p KV shards), plus the dataflow variants.

    Head-dim split: ``qk_mode``: ``reduce_scores`` all-reduces the partial Q·Kᵀ over the
    dim_segment group before softmax; ``gather_qk`` all-gathers the Q and K segments instead;
    ``segment_local`` (incorrect, for demonstration) reduces nothing. ``output``: ``allreduce`` is
    a row-parallel out-projection (Megatron); ``concat`` is the deployment plan's literal dataflow.

    KV shards (``kv_shards`` p > 1): KV positions in blocks of ``tokens_per_block`` placed by
    ``kv_placement``; ``hop_b`` > 1 splits the batch into that many chunks in decode and overlaps
    chunk i's All-to-All with chunk i+1's attention (HOP-B). ``kv_share`` is derived from the
    model (:meth:`resolve`): how many head groups hold a copy of the same KV heads (n / K when
    n > K, else 1).
    """

    head_groups: int  # n
    dim_segments: int = 1  # m
    qk_mode: QkMode = QkMode.REDUCE_SCORES
    output: OutputMode = OutputMode.ALLREDUCE
    kv_shards: int = 1  # p
    kv_placement: KvPlacement = KvPlacement.ROUND_ROBIN
    tokens_per_block: int | None = None  # None: kv_layout.default_tokens_per_block, set by resolve()
    hop_b: int = 1  # batch chunks (1: no overlap)
    kv_share: int = 1  # head groups per copy of a KV head (set by resolve())

    def __post_init__(self):
        for f in ("head_groups", "dim_segments", "kv_shards", "hop_b", "kv_share"):
            object.__setattr__(self, f, positive_int(f, getattr(self, f)))
        if self.tokens_per_block is not None:
            object.__setattr__(self, "tokens_per_block", positive_int("tokens_per_block", self.tokens_per_block))
        object.__setattr__(self, "qk_mode", QkMode(one_of("qk_mode", self.qk_mode, tuple(QkMode))))
        object.__setattr__(self, "output", OutputMode(one_of("output", self.output, OUTPUT_MODES)))
        object.__setattr__(self, "kv_placement",
                           KvPlacement(one_of("kv_placement", self.kv_placement, tuple(KvPlacement))))
        if self.kv and self.dim_segments > 1:
            raise HelixInputError("kv_shards", "cannot be combined with dim_segments > 1 (the second level is "
                                               "head-dim segments or KV shards)", self.kv_shards)
        if self.kv and self.qk_mode != QkMode.REDUCE_SCORES:
            raise HelixInputError("qk_mode", "applies to the head-dim split, not to kv_shards", str(self.qk_mode))
        if self.kv and self.output != OutputMode.ALLREDUCE:
            raise HelixInputError("output", "applies to the head-dim split, not to kv_shards", str(self.output))
        if self.hop_b > 1 and not self.kv:
            raise HelixInputError("hop_b", "overlaps the KV shards' All-to-All: it needs kv_shards > 1", self.hop_b)

    def to_dict(self) -> dict:
        """Plain JSON-able fields (the inverse of :meth:`from_dict`); the KV-shard fields only for a
        KV-shard partition, ``kv_share`` only when KV heads are copied."""
        d = {"head_groups": self.head_groups, "dim_segments": self.dim_segments,
             "qk_mode": str(self.qk_mode), "output": str(self.output)}
        if self.kv:
            d.update(kv_shards=self.kv_shards, kv_placement=str(self.kv_placement),
                     tokens_per_block=self.tokens_per_block, hop_b=self.hop_b)
        if self.kv_share > 1:
            d["kv_share"] = self.kv_share
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Partition:
        return cls(d["head_groups"], d["dim_segments"], d.get("qk_mode", QkMode.REDUCE_SCORES),
                   d.get("output", OutputMode.ALLREDUCE), d.get("kv_shards", 1),
                   d.get("kv_placement", KvPlacement.ROUND_ROBIN), d.get("tokens_per_block"), d.get("hop_b", 1),
                   d.get("kv_share", 1))

    @property
    def kv(self) -> bool:
        """The second level is KV-sequence shards."""
        return self.kv_shards > 1

    @property
    def second_level(self) -> SecondLevel:
        return SecondLevel.KV_SHARDS if self.kv else SecondLevel.DIM_SEGMENTS

    @property
    def second(self) -> int:
        """m or p: the ranks of one head group."""
        return self.kv_shards if self.kv else self.dim_segments

    @property
    def second_dim(self) -> MeshDim:
        """The mesh dim of a head group's ranks: dim_segment or kv_shard."""
        return MeshDim.KV_SHARD if self.kv else MeshDim.DIM_SEGMENT

    @property
    def label(self) -> str:
        """``n x m`` (``4x4``), or ``n x p`` with ``kv`` for KV shards (``4x4kv``)."""
        return f"{self.head_groups}x{self.second}" + ("kv" if self.kv else "")

    def build_mesh(self, device_type: str, backend_override: dict | None = None):
        """The ``(n, m)`` DeviceMesh named ``("head_group", "dim_segment")`` (or ``(n, p)`` named
        ``("head_group", "kv_shard")``) of an initialised process group of n·m ranks (torchtitan's
        ``ParallelDims.build_mesh``). ``backend_override`` (mesh dim -> (backend, options)) goes to
        ``init_device_mesh``: the sub-groups' timeout."""
        from torch.distributed.device_mesh import init_device_mesh

        names = KV_MESH_DIM_NAMES if self.kv else MESH_DIM_NAMES
        return init_device_mesh(device_type, (self.head_groups, self.second), mesh_dim_names=names,
                                backend_override=backend_override)

    @property
    def exact(self) -> bool:
        """False for the deliberately wrong ``segment_local`` dataflow."""
        return self.qk_mode != SEGMENT_LOCAL

    @property
    def world_size(self) -> int:
        """G = n·m (or N = n·p)."""
        return self.head_groups * self.second

    def coords(self, rank: int) -> tuple[int, int]:
        """rank -> (head_group g, dim_segment s or kv_shard j), row-major."""
        return divmod(rank, self.second)

    def rank(self, g: int, s: int) -> int:
        """(g, s) -> rank = g·m + s (or g·p + j)."""
        return g * self.second + s

    def group_ranks(self, dim: str, rank: int) -> list[int]:
        """Ranks of ``rank``'s process group along ``dim`` (a :class:`MeshDim`)."""
        g, s = self.coords(rank)
        if dim == self.second_dim:  # same head group, every segment (or shard)
            return [self.rank(g, t) for t in range(self.second)]
        if dim in (MeshDim.DIM_SEGMENT, MeshDim.KV_SHARD):  # the other second level: a group of one
            return [rank]
        if dim == MeshDim.HEAD_GROUP:  # same segment (or shard), every head group
            return [self.rank(h, s) for h in range(self.head_groups)]
        if dim == MeshDim.KV_SHARE:  # the head groups holding the same KV heads
            first = g - g % self.kv_share
            return [self.rank(h, s) for h in range(first, first + self.kv_share)]
        if dim == MeshDim.WORLD:
            return list(range(self.world_size))
        raise HelixInputError("group", f"must be one of {', '.join(MeshDim)}", dim)

    def groups(self, dim: str) -> list[list[int]]:
        """All distinct process groups along ``dim``, in the order DeviceMesh creates them."""
        return [list(g) for g in _group_table(self, dim)[0]]

    def group_of(self, dim: str, rank: int) -> tuple[int, ...]:
        """:meth:`group_ranks` as one tuple shared by every member of the group: building every
        rank's program costs O(G), not O(G x group size) (the world group made that O(G²))."""
        groups, index = _group_table(self, dim)
        return groups[index[rank]]

    def resolve(self, model: ModelConfig) -> Partition:
        """This partition with what the model decides: ``kv_share`` and, for KV shards, the
        default ``tokens_per_block``. Raises nothing; :meth:`validate` judges."""
        share = self.head_groups // model.kv_heads if self.head_groups > model.kv_heads else 1
        tpb = self.tokens_per_block
        if self.kv and tpb is None:
            tpb = kv_layout.default_tokens_per_block(model.seq_len, self.kv_shards)
        return replace(self, kv_share=max(share, 1), tokens_per_block=tpb)

    def validate(self, model: ModelConfig, world_size: int | None = None) -> Partition:
        """Check this partition fits ``model`` (and a launch of ``world_size`` ranks); return it
        resolved (:meth:`resolve`)."""
        n, G = self.head_groups, self.world_size
        if world_size is not None:
            world_size = positive_int("world_size", world_size)
            if world_size != G:
                what = "kv_shards" if self.kv else "dim_segments"
                raise HelixInputError(
                    "world_size", f"must equal head_groups x {what} = {n}x{self.second} = {G}", world_size)
        if model.heads % n:
            raise HelixInputError("head_groups", f"must divide heads ({model.heads})", n)
        K = model.kv_heads
        if K % n and n % K:
            raise HelixInputError("head_groups", f"must divide kv_heads ({K}) or be a multiple of it", n)
        if self.kv:
            self._validate_kv(model)
        else:
            for f in ("head_dim_qk", "head_dim_v"):
                if getattr(model, f) % self.dim_segments:
                    raise HelixInputError("dim_segments", f"must divide {f.replace('_qk', '')} ({getattr(model, f)})",
                                          self.dim_segments)
            if self.output == OutputMode.CONCAT and model.hidden % G:
                raise HelixInputError("output", f"concat splits Wo's {model.hidden} columns {G} ways", "concat")
        # n | H and m | d make n·m | H·d = D for the plan's models, so concat's D/G split rarely fails
        if model.mlp_hidden % G:
            raise HelixInputError(
                "mlp_hidden", f"must be divisible by world size {G} (FC1/FC2 are split G ways)", model.mlp_hidden
            )
        return self.resolve(model)

    def _validate_kv(self, model: ModelConfig) -> None:
        n, p, S = self.head_groups, self.kv_shards, model.seq_len
        h_g = model.heads // n
        if h_g % p:
            raise HelixInputError("kv_shards", f"must divide the heads per group (H/n = {model.heads}/{n} = {h_g}): "
                                               "the All-to-All hands each shard H/(n·p) heads", p)
        if p > S:
            raise HelixInputError("kv_shards", f"must be at most seq_len ({S}): every shard needs a KV position", p)
        tpb = self.resolve(model).tokens_per_block
        blocks = kv_layout.n_blocks(S, tpb)
        if blocks < p:
            raise HelixInputError("tokens_per_block", f"leaves {blocks} blocks of the {S} positions for {p} "
                                                      "kv_shards (every shard needs a block)", tpb)


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


def valid_partitions(model: ModelConfig, world_size: int, kv: bool = False, **variants) -> list[Partition]:
    """The factorisations of ``world_size`` that ``model`` admits, as Partitions (resolved):
    n × m head-dim splits, or with ``kv`` the n × p KV-shard splits with p > 1."""
    out = []
    for n, second in factorisations(world_size):
        if kv and second == 1:
            continue
        try:
            p = Partition(n, kv_shards=second, **variants) if kv else Partition(n, second, **variants)
            out.append(p.validate(model))
        except HelixInputError:
            continue
    return out
