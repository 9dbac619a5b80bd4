"""Closed-form Programs of one block, for arrays of configurations, per strategy.

Each builder writes one rank's forward of one block for one micro-batch (``b``
sequences of ``L`` tokens, ``T = b·L``) the way ``helixlib.plan.build`` writes the helix
block, with numpy arrays for the dimensions, and lists the collectives its backward
adds. ``tests/test_design_space.py`` checks ``helix_program`` against the Plan-derived
Program on sample configurations (same FLOPs, bytes, sizes, collectives).

Strategies over ``G`` GPUs (β bytes per element, ``d = D/H``):

``helix`` (n × m, reduce_scores | gather_qk)
    The workbook's scheme (``helixlib.plan.build``, output = allreduce): rank (g, s) holds
    ``h_g = H/n`` heads × ``d_s = d/m`` columns of Q/K/V, F/G MLP columns. Forward:
    partial-score all-reduce ``[b, h_g, L, L]`` over the m ranks (or all-gathers of Q and
    K ``[b, L, h_g, d]``), two all-reduces ``[b, L, D]`` over all G. LayerNorm inputs and
    outputs and the residuals are replicated: ``[b, L, D]`` on every rank. With m = 1 it
    is **pure head parallelism** (Megatron tensor parallelism without sequence
    parallelism).
``megatron-tp`` / ``megatron-sp`` (needs G | H; G | b·L with SP)
    Megatron tensor parallelism, without or with sequence parallelism (Korthikanti et al.
    2022), as Megatron-LM runs it: ``helixlib.estimate.megatron``.
``ulysses`` (needs G | H, G | L)
    DeepSpeed-Ulysses sequence parallelism: every op but attention on T/G tokens with
    full weights; four all-to-alls per layer (Q, K, V to head-sharded, O back), each of
    the rank's ``T/G·D`` elements. Weights, gradients and Adam states are sharded ZeRO-3
    style (as Ulysses is run): one all-gather of the layer's weights per forward (and
    again in backward, plus a reduce-scatter of its gradients), prefetched — they
    overlap the whole layer's compute.
``ring`` (needs G | L)
    Ring attention / context parallelism: T/G tokens per rank; attention runs G blocks
    against the K/V chunks passed around the ring (``G−1`` sends of ``2·T/G·D``
    elements), each send hidden behind a block's compute when it is shorter. Blockwise
    (online-softmax, flash-style) by construction: the flash option does not change it.
    Weights ZeRO-3 as for Ulysses.

All strategies count the full L×L scores (no causal skipping), like the Plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from helixlib.estimate.workload import LSE_BYTES, WGRAD_OVERLAP, OpCost, Overlap, Program, ProgramBuilder
from helixlib.plan import FLOPS_PER_ELEMENT, CollectiveKind, Comm, MeshDim, Phase
from helixlib.plan.names import Strategy

FLOPS = FLOPS_PER_ELEMENT | {"add": 2}  # the Plan's per-element counts; the residual adds carry a bias: 2
#: the design space's strategies, by the names the CLI uses (``helixlib.plan.names.Strategy``)
STRATEGIES = tuple(str(s) for s in Strategy)
WHOLE_LAYER = ("*",)


@dataclass
class Shapes:
    """Dimensions of many configurations (int64 arrays of one length, or ints)."""

    micro_batch: object  # b
    seq_len: object  # L
    hidden: object  # D
    heads: object  # H
    mlp_hidden: object  # F
    world_size: object  # G
    head_groups: object = 1  # n (helix)
    dim_segments: object = 1  # m (helix)

    @property
    def tokens(self):
        return self.micro_batch * self.seq_len

    @property
    def head_dim(self):
        return self.hidden // self.heads


def group_nodes(start_stride, size, count, gpus_per_node: int):
    """Most nodes any of ``count`` groups of ``size`` consecutive ranks (group g starts at
    g·start_stride) spans; arrays allowed."""
    stride, size, count = (np.asarray(v, dtype=np.int64) for v in (start_stride, size, count))
    g = np.arange(int(count.max()) if count.size else 1)
    first = g * stride[..., None]
    span = (first + size[..., None] - 1) // gpus_per_node - first // gpus_per_node + 1
    out = np.where(g < count[..., None], span, 0).max(axis=-1)
    return int(out) if out.ndim == 0 else out


def world_nodes(G, gpus_per_node: int):
    return -(-np.asarray(G) // gpus_per_node)


# ---- helix ------------------------------------------------------------------------------


def helix_program(s: Shapes, gpus_per_node: int, dtype_bytes: int, gather_qk: bool = False) -> Program:
    """The Plan's block (output = allreduce) in closed form; see the module docstring."""
    b, L, D, H, F, G = s.micro_batch, s.seq_len, s.hidden, s.heads, s.mlp_hidden, s.world_size
    n, m = s.head_groups, s.dim_segments
    h_g, d = H // n, s.head_dim
    d_s = d // m
    w, f, T = h_g * d_s, F // G, s.tokens
    seg = group_nodes(m, m, n, gpus_per_node)
    world = world_nodes(G, gpus_per_node)
    P = ProgramBuilder(dtype_bytes)
    beta = P.beta
    P.tensor("x", T * D)
    P.elementwise("ln1", "layernorm", ["x"], "h1", T * D, FLOPS["layernorm"], params=2 * D)
    for t in "qkv":
        P.matmul(f"{t}_proj", ["h1"], t, 1, T, D, w, bias=w)
    score = b * h_g * L * L
    if gather_qk:
        for t, name in (("q", Comm.Q_ALLGATHER), ("k", Comm.K_ALLGATHER)):
            P.comm(name, CollectiveKind.ALL_GATHER, MeshDim.DIM_SEGMENT, m, seg, T * h_g * d * beta,
                   output=f"{t}_full", out_elements=T * h_g * d)
        P.matmul("scores", ["q_full", "k_full"], "s", b * h_g, L, d, L, weight=False)
    else:
        P.matmul("scores", ["q", "k"], "s_part", b * h_g, L, d_s, L, weight=False)
        P.comm(Comm.SCORES_ALLREDUCE, CollectiveKind.ALL_REDUCE, MeshDim.DIM_SEGMENT, m, seg, score * beta,
               output="s", out_elements=score)
    P.elementwise("softmax", "softmax", ["s"], "p", score, FLOPS["softmax"])
    P.matmul("attn_v", ["p", "v"], "o", b * h_g, L, L, d_s, weight=False)
    P.matmul("out_proj", ["o"], "a_part", 1, T, w, D)
    _world_all_reduce(P, Comm.OUT_PROJ_ALLREDUCE, "a", T * D, G, world)
    P.elementwise("residual1", "add", ["x", "a"], "x1", T * D, FLOPS["add"], params=D)
    P.elementwise("ln2", "layernorm", ["x1"], "h2", T * D, FLOPS["layernorm"], params=2 * D)
    P.matmul("fc1", ["h2"], "u", 1, T, D, f, bias=f)
    P.elementwise("gelu", "gelu", ["u"], "z", T * f, FLOPS["gelu"])
    P.matmul("fc2", ["z"], "y_part", 1, T, f, D)
    _world_all_reduce(P, Comm.FC2_ALLREDUCE, "y", T * D, G, world)
    P.elementwise("residual2", "add", ["x1", "y"], "out", T * D, FLOPS["add"], params=D)
    # backward, in the Plan's order: the conjugates of the copy-to-region points and the score reduction
    _world_all_reduce(P, Comm.FC1_INPUT.backward(), None, T * D, G, world, Phase.BACKWARD)
    if gather_qk:
        for name in (Comm.K_ALLGATHER, Comm.Q_ALLGATHER):
            P.comm(name.backward(), CollectiveKind.REDUCE_SCATTER, MeshDim.DIM_SEGMENT, m, seg,
                   T * h_g * d * beta, phase=Phase.BACKWARD)
    else:
        P.comm(Comm.SCORES_ALLREDUCE.backward(), CollectiveKind.ALL_REDUCE, MeshDim.DIM_SEGMENT, m, seg,
               score * beta, phase=Phase.BACKWARD)
    _world_all_reduce(P, Comm.QKV_INPUT.backward(), None, T * D, G, world, Phase.BACKWARD)
    return P.build(communicators=(np.asarray(G) > 1).astype(int) + (np.asarray(m) > 1))


def _world_all_reduce(P, name, output, elements, G, nodes, phase=Phase.FORWARD):
    ops = WGRAD_OVERLAP.get(name)
    P.comm(name, CollectiveKind.ALL_REDUCE, MeshDim.WORLD, G, nodes, elements * P.beta, phase=phase,
           overlap=Overlap(Phase.BACKWARD, ops, 0.5) if ops else None, output=output,
           out_elements=elements if output else None)


# ---- sequence parallel: Ulysses and ring -------------------------------------------------


def _sequence_parallel_program(s: Shapes, gpus_per_node: int, dtype_bytes: int, attention) -> Program:
    """T/G tokens per rank, full (ZeRO-3 gathered) weights; ``attention(P, world)`` maps q, k, v to o."""
    D, F, G = s.hidden, s.mlp_hidden, s.world_size
    Ts = s.tokens // G
    world = world_nodes(G, gpus_per_node)
    P = ProgramBuilder(dtype_bytes)
    P.tensor("x", Ts * D)
    P.elementwise("ln1", "layernorm", ["x"], "h1", Ts * D, FLOPS["layernorm"], params=2 * D)
    for t in "qkv":
        P.matmul(f"{t}_proj", ["h1"], t, 1, Ts, D, D, bias=D)
    o = attention(P, world)
    P.matmul("out_proj", [o], "a", 1, Ts, D, D)
    P.elementwise("residual1", "add", ["x", "a"], "x1", Ts * D, FLOPS["add"], params=D)
    P.elementwise("ln2", "layernorm", ["x1"], "h2", Ts * D, FLOPS["layernorm"], params=2 * D)
    P.matmul("fc1", ["h2"], "u", 1, Ts, D, F, bias=F)
    P.elementwise("gelu", "gelu", ["u"], "z", Ts * F, FLOPS["gelu"])
    P.matmul("fc2", ["z"], "y", 1, Ts, F, D)
    P.elementwise("residual2", "add", ["x1", "y"], "out", Ts * D, FLOPS["add"], params=D)
    layer = P.params * P.beta  # the whole layer's weights, gathered (ZeRO-3)
    P.comm("weights_allgather", CollectiveKind.ALL_GATHER, MeshDim.WORLD, G, world, layer,
           overlap=Overlap(Phase.FORWARD, WHOLE_LAYER))
    P.comm("weights_allgather.backward", CollectiveKind.ALL_GATHER, MeshDim.WORLD, G, world, layer,
           phase=Phase.BACKWARD, overlap=Overlap(Phase.BACKWARD, WHOLE_LAYER))
    P.comm("grads_reduce_scatter", CollectiveKind.REDUCE_SCATTER, MeshDim.WORLD, G, world, layer, phase=Phase.BACKWARD,
           overlap=Overlap(Phase.BACKWARD, WHOLE_LAYER))
    prog = P.build(communicators=np.ones_like(np.asarray(G)))
    # stored: a 1/G shard; staged: this layer's and the prefetched layer's gathered weights (+ its gradients)
    return replace(prog, weight_params=P.params / G, extra_buffer_bytes=prog.extra_buffer_bytes + 2 * layer,
                   backward_buffer_bytes=layer)


def ulysses_program(s: Shapes, gpus_per_node: int, dtype_bytes: int) -> Program:
    """DeepSpeed-Ulysses over G ranks; see the module docstring."""
    b, L, G, d = s.micro_batch, s.seq_len, s.world_size, s.head_dim
    h, local = s.heads // G, s.tokens // G * s.hidden  # heads per rank; elements of one [b, L/G, D] tensor

    def attention(P, world):
        def a2a(name, src, dst, phase=Phase.FORWARD):
            P.comm(name, CollectiveKind.ALL_TO_ALL, MeshDim.WORLD, G, world, local * P.beta, phase=phase, output=dst,
                   out_elements=local if dst else None)

        for t in "qkv":
            a2a(f"{t}_all_to_all", t, f"{t}_heads")
        P.matmul("scores", ["q_heads", "k_heads"], "s", b * h, L, d, L, weight=False)
        P.elementwise("softmax", "softmax", ["s"], "p", b * h * L * L, FLOPS["softmax"])
        P.matmul("attn_v", ["p", "v_heads"], "o_heads", b * h, L, L, d, weight=False)
        a2a("o_all_to_all", "o_heads", "o")
        for t in "oqkv":
            a2a(f"{t}_all_to_all.backward", None, None, Phase.BACKWARD)
        return "o"

    return _sequence_parallel_program(s, gpus_per_node, dtype_bytes, attention)


def ring_program(s: Shapes, gpus_per_node: int, dtype_bytes: int) -> Program:
    """Ring attention (context parallel) over G ranks; see the module docstring."""
    b, L, G, d, H = s.micro_batch, s.seq_len, s.world_size, s.head_dim, s.heads
    chunk = s.tokens // G * s.hidden  # elements of this rank's K (or V) chunk

    def attention(P, world):
        beta = P.beta
        rows = b * H * (L // G)  # (sequence, head, query) rows on this rank
        P.sizes["lse"] = rows * LSE_BYTES
        P.tensor("o", chunk)
        # reads q, all G chunks of K and V as they pass, writes o and the log-sum-exp
        moved = P.sizes["q"] + G * (P.sizes["k"] + P.sizes["v"]) + P.sizes["o"] + P.sizes["lse"]
        P.ops.append(OpCost("flash_attention", "flash_attention", ("q", "k", "v"), "o", 4 * rows * L * d, moved,
                            None, ("q", "k", "v", "o", "lse")))
        steps = G - 1
        P.comm("kv_ring", CollectiveKind.SEND_RECV, MeshDim.WORLD, G, world, steps * 2 * chunk * beta,
               count=np.maximum(steps, 1), overlap=Overlap(Phase.FORWARD, ("flash_attention",)))
        P.comm("kv_ring.backward", CollectiveKind.SEND_RECV, MeshDim.WORLD, G, world, 2 * steps * 2 * chunk * beta,
               phase=Phase.BACKWARD, count=np.maximum(2 * steps, 1),
               overlap=Overlap(Phase.BACKWARD, ("flash_attention",)))
        return "o"

    prog = _sequence_parallel_program(s, gpus_per_node, dtype_bytes, attention)
    # receive buffers for the K/V chunk in flight (K and V, double-buffered)
    return replace(prog, extra_buffer_bytes=prog.extra_buffer_bytes + 4 * chunk * dtype_bytes,
                   notes=["ring attention: blockwise (flash-style) attention by construction"])

