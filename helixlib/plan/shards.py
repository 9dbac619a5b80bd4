"""Which slice of every weight each rank owns.

Rank (g, s) owns heads ``[g·h_g, (g+1)·h_g)`` and, inside each of those heads, the
columns ``[s·d_s, (s+1)·d_s)`` of the head dimension. Weights are stored
``[in_features, out_features]`` (``y = x @ W + b``) so the slices read like the maths:

* Wq, Wk, Wv ``[D, D]``: columns ``qkv_columns`` (column parallel);
* Wo ``[D, D]``: rows ``qkv_columns`` (row parallel, ``output="allreduce"``) or the
  columns ``out_columns`` (``output="concat"``: a column-parallel projection of the
  gathered heads);
* W1 ``[D, F]``: columns ``mlp_slice``; W2 ``[F, D]``: rows ``mlp_slice``;
* LayerNorm weights, the row-parallel biases ``bo`` (allreduce) and ``b2``: replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.plan.model import ModelConfig
from helixlib.plan.names import OutputMode
from helixlib.plan.partition import Partition


@dataclass(frozen=True)
class Shard:
    """What rank ``rank`` = (head_group, dim_segment) owns; all ranges are half-open."""

    rank: int
    head_group: int
    dim_segment: int
    heads: tuple[int, int]  # [first head, last head + 1)
    dim_slice: tuple[int, int]  # columns of each head's d, [s·d_s, (s+1)·d_s)
    head_dim: int  # d, to map (head, column) to a column of the D-wide projection
    mlp_slice: tuple[int, int]  # columns of W1 / rows of W2, [r·F/G, (r+1)·F/G)
    out_columns: tuple[int, int] | None  # output=concat: columns of Wo and bo

    @property
    def qkv_ranges(self) -> list[tuple[int, int]]:
        """Ranges of the D-wide Q/K/V projection output owned here, one per head."""
        lo, hi = self.dim_slice
        return [(h * self.head_dim + lo, h * self.head_dim + hi) for h in range(*self.heads)]

    @property
    def qkv_columns(self) -> list[int]:
        """The same as a flat list of column indices, ordered (head, column) — length h_g·d_s."""
        return [c for lo, hi in self.qkv_ranges for c in range(lo, hi)]

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "head_group": self.head_group,
            "dim_segment": self.dim_segment,
            "heads": list(range(*self.heads)),
            "dim_slice": list(self.dim_slice),
            "qkv_columns": [list(r) for r in self.qkv_ranges],
            "mlp_slice": list(self.mlp_slice),
            "out_columns": None if self.out_columns is None else list(self.out_columns),
        }


def make_shards(model: ModelConfig, part: Partition) -> list[Shard]:
    """One Shard per rank, rank-ordered. ``part`` must already be validated against ``model``."""
    n, m, G = part.head_groups, part.dim_segments, part.world_size
    h_g, d_s, f_r = model.heads // n, model.head_dim // m, model.mlp_hidden // G
    shards = []
    for r in range(G):
        g, s = part.coords(r)
        out_cols = None
        if part.output == OutputMode.CONCAT:
            w = model.hidden // G
            out_cols = (r * w, (r + 1) * w)
        shards.append(
            Shard(
                rank=r,
                head_group=g,
                dim_segment=s,
                heads=(g * h_g, (g + 1) * h_g),
                dim_slice=(s * d_s, (s + 1) * d_s),
                head_dim=model.head_dim,
                mlp_slice=(r * f_r, (r + 1) * f_r),
                out_columns=out_cols,
            )
        )
    return shards


def slice_weight(name: str, full, shard: Shard):
    """The part of dense weight ``name`` (see ``helixlib.runtime.dense.WEIGHT_NAMES``) that ``shard``
    owns. Works on torch tensors and numpy arrays; replicated weights come back whole."""
    cols = shard.qkv_columns
    lo, hi = shard.mlp_slice
    if name in ("Wq", "Wk", "Wv"):
        return full[:, cols]
    if name in ("bq", "bk", "bv"):
        return full[cols]
    if name == "Wo":
        if shard.out_columns is not None:  # output=concat: column parallel
            return full[:, shard.out_columns[0]:shard.out_columns[1]]
        return full[cols, :]  # row parallel
    if name == "bo":
        return full if shard.out_columns is None else full[shard.out_columns[0]:shard.out_columns[1]]
    if name == "W1":
        return full[:, lo:hi]
    if name == "b1":
        return full[lo:hi]
    if name == "W2":
        return full[lo:hi, :]
    return full  # LayerNorm weights and b2: replicated
