"""Which slice of every weight (and, for KV shards, which KV positions) each rank owns.

Weights are stored ``[in_features, out_features]`` (``y = x @ W + b``) so the slices read like the
maths. Wq is ``[D, H·d_qk]``, Wk ``[D, K·d_qk]``, Wv ``[D, K·d_v]``, Wo ``[H·d_v, D]`` (K KV heads;
query head h uses KV head ``h // (H/K)``).

Head-dim split, rank (g, s): query heads ``[g·h_g, (g+1)·h_g)`` and, inside each, the columns
``[s·d_s, (s+1)·d_s)`` of d_qk (of d_v for V and Wo's rows); the KV heads those queries use, same
columns. Wq/Wk/Wv by columns (column parallel), Wo by rows (row parallel, ``output="allreduce"``)
or by the columns ``out_columns`` (``output="concat"``).

KV shards, rank (g, j): all of d_qk and d_v of the group's query and KV heads (Wq/Wk/Wv are the
same on the p shards of a group: the projections run redundantly), Wo's rows of the H/(n·p) heads
``out_heads`` it combines after the All-to-All, and the KV ``positions`` it owns.

Both: W1 (and W3, SwiGLU's up) ``[D, F]`` by columns ``mlp_slice``, W2 ``[F, D]`` by rows;
LayerNorm weights, the row-parallel biases ``bo`` (allreduce) and ``b2``: replicated. With more
head groups than KV heads (n > K) each KV head's Wk/Wv slice sits on n/K head groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.plan import kv_layout
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import OutputMode
from helixlib.plan.partition import Partition

Range = tuple[int, int]


def head_ranges(heads: Range, width: int, cols: Range) -> list[Range]:
    """Columns ``cols`` of each head in ``heads`` of a projection whose heads are ``width`` wide."""
    return [(h * width + cols[0], h * width + cols[1]) for h in range(*heads)]


@dataclass(frozen=True)
class Shard:
    """What rank ``rank`` = (head_group, dim_segment or kv_shard) owns; all ranges are half-open."""

    rank: int
    head_group: int
    dim_segment: int  # 0 for KV shards
    heads: Range  # query heads [first, last + 1)
    dim_slice: Range  # columns of each head's d_qk
    head_dim: int  # d_qk, to map (head, column) to a column of Wq / Wk
    mlp_slice: Range  # columns of W1 (W3) / rows of W2, [r·F/G, (r+1)·F/G)
    out_columns: Range | None  # output=concat: columns of Wo and bo
    kv_heads: Range = (0, 0)  # the KV heads the query heads use
    dim_slice_v: Range = (0, 0)  # columns of each head's d_v
    head_dim_v: int = 0
    kv_shard: int = 0  # j
    out_heads: Range | None = None  # KV shards: heads combined here (Wo's rows); None: ``heads``
    positions: tuple[Range, ...] = ()  # KV shards: the KV positions owned (runs), of the context

    @property
    def q_ranges(self) -> list[Range]:
        """Columns of Wq owned here, one range per query head."""
        return head_ranges(self.heads, self.head_dim, self.dim_slice)

    @property
    def k_ranges(self) -> list[Range]:
        return head_ranges(self.kv_heads, self.head_dim, self.dim_slice)

    @property
    def v_ranges(self) -> list[Range]:
        return head_ranges(self.kv_heads, self.head_dim_v, self.dim_slice_v)

    @property
    def o_rows(self) -> list[Range]:
        """Rows of Wo (row-parallel out-projection), one range per head."""
        if self.out_heads is not None:
            return head_ranges(self.out_heads, self.head_dim_v, (0, self.head_dim_v))
        return head_ranges(self.heads, self.head_dim_v, self.dim_slice_v)

    @property
    def qkv_ranges(self) -> list[Range]:
        """The Q columns (also K and V's and Wo's rows for multi-head attention with d = D/H)."""
        return self.q_ranges

    @property
    def qkv_columns(self) -> list[int]:
        """The same as a flat list of column indices, ordered (head, column) — length h_g·d_s."""
        return flat_columns(self.q_ranges)

    @property
    def owned_positions(self) -> list[int]:
        """The KV positions owned, one by one (for small contexts: the torch layer's index)."""
        return [t for lo, hi in self.positions for t in range(lo, hi)]

    @property
    def kv_length(self) -> int:
        """How many KV positions this rank owns (KV shards; 0 otherwise)."""
        return kv_layout.count(self.positions)

    def to_dict(self) -> dict:
        d = {
            "rank": self.rank,
            "head_group": self.head_group,
            "dim_segment": self.dim_segment,
            "heads": list(range(*self.heads)),
            "dim_slice": list(self.dim_slice),
            "qkv_columns": [list(r) for r in self.qkv_ranges],
            "mlp_slice": list(self.mlp_slice),
            "out_columns": None if self.out_columns is None else list(self.out_columns),
            "kv_heads": list(range(*self.kv_heads)),
            "k_columns": [list(r) for r in self.k_ranges],
            "v_columns": [list(r) for r in self.v_ranges],
        }
        if self.out_heads is not None:
            d.update(kv_shard=self.kv_shard, out_heads=list(range(*self.out_heads)),
                     o_rows=[list(r) for r in self.o_rows], positions=[list(r) for r in self.positions])
        return d


def flat_columns(ranges: list[Range]) -> list[int]:
    return [c for lo, hi in ranges for c in range(lo, hi)]


def _kv_heads(model: ModelConfig, part: Partition, g: int) -> Range:
    """The KV heads the query heads of group g use: K/n of them, or one shared by n/K groups."""
    n, K = part.head_groups, model.kv_heads
    if n <= K:
        k_g = K // n
        return g * k_g, (g + 1) * k_g
    kh = g // (n // K)
    return kh, kh + 1


def make_shards(model: ModelConfig, part: Partition, context: int | None = None) -> list[Shard]:
    """One Shard per rank, rank-ordered. ``part`` must already be validated (and resolved) against
    ``model``; ``context``: the KV positions that exist (default ``seq_len``), for KV shards."""
    n, G = part.head_groups, part.world_size
    dq, dv = model.head_dim_qk, model.head_dim_v
    h_g, f_r = model.heads // n, model.mlp_hidden // G
    m = part.dim_segments
    context = model.seq_len if context is None else context
    shards = []
    for r in range(G):
        g, s = part.coords(r)
        out_cols = None
        if part.output == OutputMode.CONCAT:
            w = model.hidden // G
            out_cols = (r * w, (r + 1) * w)
        kv = {}
        if part.kv:  # s is the KV shard j
            h_o = h_g // part.kv_shards
            own = kv_layout.owned_ranges(s, context, model.seq_len, part.kv_shards, part.tokens_per_block,
                                         part.kv_placement)
            kv = dict(kv_shard=s, out_heads=(g * h_g + s * h_o, g * h_g + (s + 1) * h_o), positions=tuple(own))
        seg = 0 if part.kv else s
        shards.append(Shard(
            rank=r, head_group=g, dim_segment=seg, heads=(g * h_g, (g + 1) * h_g),
            dim_slice=(seg * dq // m, (seg + 1) * dq // m), head_dim=dq, mlp_slice=(r * f_r, (r + 1) * f_r),
            out_columns=out_cols, kv_heads=_kv_heads(model, part, g),
            dim_slice_v=(seg * dv // m, (seg + 1) * dv // m), head_dim_v=dv, **kv))
    return shards


def slice_weight(name: str, full, shard: Shard):
    """The part of dense weight ``name`` (see ``helixlib.runtime.dense.weight_names``) that ``shard``
    owns. Works on torch tensors and numpy arrays; replicated weights come back whole."""
    lo, hi = shard.mlp_slice
    cols = {"q": shard.q_ranges, "k": shard.k_ranges, "v": shard.v_ranges}
    if name in ("Wq", "Wk", "Wv"):
        return full[:, flat_columns(cols[name[1]])]
    if name in ("bq", "bk", "bv"):
        return full[flat_columns(cols[name[1]])]
    if name == "Wo":
        if shard.out_columns is not None:  # output=concat: column parallel
            return full[:, shard.out_columns[0]:shard.out_columns[1]]
        return full[flat_columns(shard.o_rows), :]  # row parallel
    if name == "bo":
        return full if shard.out_columns is None else full[shard.out_columns[0]:shard.out_columns[1]]
    if name in ("W1", "W3"):
        return full[:, lo:hi]
    if name in ("b1", "b3"):
        return full[lo:hi]
    if name == "W2":
        return full[lo:hi, :]
    return full  # LayerNorm weights and b2: replicated
