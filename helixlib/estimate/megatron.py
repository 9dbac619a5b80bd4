"""The Megatron-LM block as trained, in closed form: one rank of a tensor-parallel group of ``t``.

What Megatron-LM runs for one pre-LN GPT block (``ParallelTransformerLayer`` with the non-flash
``CoreAttention``, Shoeybi et al. 2019, arXiv 1909.08053; sequence parallelism and selective
recompute, Korthikanti et al. 2022, arXiv 2205.05198), every kernel priced by its FLOPs or bytes
(``T = b·s`` tokens, ``Ts = T/t`` with sequence parallelism else ``T``, β bytes per element)::

    ln1 [Ts,h] → (SP: all-gather) → QKV GEMM [T,h]·[h,3h/t] → bias add → QKᵀ (batched, b·a/t) →
    scale-mask-softmax → attention dropout (1-byte mask) → P·V → context copy (permute) →
    out-projection [T,h/t]·[h/t,h] → all-reduce (SP: reduce-scatter) → bias-dropout-add (fused, mask) →
    ln2 → (SP: all-gather) → FC1 → bias-GELU (fused) → FC2 → all-reduce (SP: reduce-scatter) → bias-dropout-add

Backward: each GEMM twice its forward; the element-wise kernels move what their backward reads
and writes (``backward_bytes``); without SP the input gradients of QKV and FC1 are all-reduced
while the weight-gradient GEMM runs (Megatron's async all-reduce); with SP the gradient of each
reduce-scatter is all-gathered, the LayerNorm outputs are all-gathered again for the weight
gradient (during the input-gradient GEMM) and the input gradients reduce-scattered (during the
weight-gradient GEMM). ``tp_overlap`` (NeMo's userbuffer overlap) also hides the forward's
all-gathers and reduce-scatters behind the GEMM next to them.

What backward keeps is Korthikanti et al.'s ``s·b·h·(10 + 24/t) + 5·a·s²·b/t`` bytes per block
(``34/t`` with SP; the ``5·a·s²·b/t`` of the attention core goes with selective recompute), which
``tests/test_megatron.py`` checks. The attention core (QKᵀ, softmax, dropout, P·V) is what selective
recompute runs again. ``flash`` fuses it into one kernel (the dropout inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from helixlib.estimate.strategies import Shapes, world_nodes
from helixlib.estimate.workload import Overlap, Program, ProgramBuilder, fuse_attention
from helixlib.plan.names import FLOPS_PER_ELEMENT, CollectiveKind, MeshDim, OpKind, Phase

MASK_BYTES = 1  # a dropout mask: one byte per element


@dataclass(frozen=True)
class Block:
    """The variant of the block: sequence parallelism, dropout (0: none), flash attention with causal
    skipping, userbuffer TP overlap, and a SwiGLU MLP (three matrices) with ``kv_heads`` K/V heads."""

    sp: bool = False
    dropout: float = 0.0
    flash: bool = False
    causal: bool = True
    tp_overlap: bool = False
    kv_heads: object = None  # None: as many as the query heads
    swiglu: bool = False


def megatron_program(s: Shapes, gpus_per_node: int, dtype_bytes: int, block: Block = Block()) -> Program:
    """One rank's forward of one block for one micro-batch (``s.world_size`` = the TP size t)."""
    b, L, D, H, F, t = s.micro_batch, s.seq_len, s.hidden, s.heads, s.mlp_hidden, s.world_size
    d, T = s.head_dim, s.tokens
    kv = H if block.kv_heads is None else block.kv_heads
    Ts = T // t if block.sp else T
    h, f, kvt = H // t, F // t, kv // t
    qkv_cols = (h + 2 * kvt) * d
    nodes = world_nodes(t, gpus_per_node)
    P = ProgramBuilder(dtype_bytes)
    beta = P.beta
    drop = block.dropout > 0
    tp = _TensorParallel(P, t, nodes, T * D * beta, block)

    def layernorm(name, src, dst):
        # backward: Apex's fused kernels read x and dy twice (weight gradients, input gradient) and write dx (5);
        # autograd then adds the residual stream's gradient to dx (x feeds the LayerNorm and the residual add: 3)
        return P.elementwise(name, OpKind.LAYERNORM, [src], dst, Ts * D, FLOPS_PER_ELEMENT[OpKind.LAYERNORM],
                             params=2 * D, backward_bytes=8 * Ts * D * beta)

    def bias_dropout_add(name, branch, residual, out, mask):
        kind = OpKind.DROPOUT if drop else OpKind.ADD
        out = P.elementwise(name, kind, [branch, residual], out, Ts * D, 3 if drop else 2, params=D,
                            extra_bytes=Ts * D * MASK_BYTES if drop else 0, saves=(mask,) if drop else (),
                            backward_bytes=Ts * D * (3 * beta + (MASK_BYTES if drop else 0)))
        if drop:
            P.sizes[mask] = Ts * D * MASK_BYTES
        return out

    P.tensor("x", Ts * D)
    layernorm("ln1", "x", "h1")
    h1 = tp.gather("qkv", "h1", "h1_full")
    P.matmul("qkv", [h1], "qkv_raw", 1, T, D, qkv_cols, saves=("h1",))
    # backward: the bias gradient (a read of the output gradient) and the gradients of the Q, K and V views
    # (three batched-GEMM outputs) written back into the fused QKV gradient (autograd's SplitBackward: 3)
    P.elementwise("qkv_bias", OpKind.ADD, ["qkv_raw"], "qkv_t", T * qkv_cols, 1, params=qkv_cols,
                  backward_bytes=4 * T * qkv_cols * beta)
    score = b * h * L * L
    P.matmul("scores", ["qkv_t"], "s", b * h, L, d, L, weight=False, selective=True)
    P.elementwise("softmax", OpKind.SOFTMAX, ["s"], "p", score, FLOPS_PER_ELEMENT[OpKind.SOFTMAX],
                  backward_bytes=3 * score * beta, selective=True)
    probs = "p"
    if drop:
        probs = P.elementwise("attention_dropout", OpKind.DROPOUT, ["p"], "p_drop", score, 2,
                              extra_bytes=score * MASK_BYTES, saves=("attention_mask",),
                              backward_bytes=score * (2 * beta + MASK_BYTES), selective=True)
        P.sizes["attention_mask"] = score * MASK_BYTES
    P.matmul("attn_v", [probs, "qkv_t"], "ctx_heads", b * h, L, L, d, weight=False, selective=True)
    P.elementwise("context_copy", OpKind.COPY, ["ctx_heads"], "ctx", T * h * d, 0, saves=(),
                  backward_bytes=2 * T * h * d * beta)
    P.matmul("out_proj", ["ctx"], "a_part", 1, T, h * d, D)
    a = tp.reduce("out_proj", "a_part", "a", Ts * D)
    bias_dropout_add("bias_dropout_add1", a, "x", "x1", "mask1")
    layernorm("ln2", "x1", "h2")
    h2 = tp.gather("fc1", "h2", "h2_full")
    up = 2 * f if block.swiglu else f
    P.matmul("fc1", [h2], "u", 1, T, D, up, saves=("h2",))
    P.params += up  # the FC1 bias, added in the fused bias-activation kernel
    P.elementwise("bias_gelu" if not block.swiglu else "swiglu", OpKind.GELU, ["u"], "z", T * f,
                  FLOPS_PER_ELEMENT[OpKind.GELU], backward_bytes=(T * up * 3 + T * f) * beta)
    P.matmul("fc2", ["z"], "y_part", 1, T, f, D)
    y = tp.reduce("fc2", "y_part", "y", Ts * D)
    bias_dropout_add("bias_dropout_add2", y, "x1", "out", "mask2")
    tp.backward()
    prog = P.build(communicators=np.ones_like(np.asarray(t)))
    if block.flash:
        prog = fuse_attention(prog, L, causal=block.causal)
    return prog


class _TensorParallel:
    """The tensor-parallel collectives of the block, with or without sequence parallelism."""

    def __init__(self, P: ProgramBuilder, t, nodes, full_bytes, block: Block):
        self.P, self.t, self.nodes, self.full, self.block = P, t, nodes, full_bytes, block
        self.gathered: list[str] = []

    def _comm(self, name, kind, phase, ops=None, output=None, out_elements=None, fraction=1.0):
        overlap = None if ops is None else Overlap(phase, ops, fraction)
        self.P.comm(name, kind, MeshDim.WORLD, self.t, self.nodes, self.full, phase=phase, overlap=overlap,
                    output=output, out_elements=out_elements)

    def gather(self, gemm: str, src: str, dst: str) -> str:
        """Before a column-parallel GEMM: the SP all-gather of its input (or nothing)."""
        self.gathered.append(gemm)
        if not self.block.sp:
            return src
        ops = (gemm,) if self.block.tp_overlap else None
        self._comm(f"{gemm}_input_allgather", CollectiveKind.ALL_GATHER, Phase.FORWARD, ops, dst,
                   self.full // self.P.beta)
        return dst

    def reduce(self, gemm: str, src: str, dst: str, elements) -> str:
        """After a row-parallel GEMM: all-reduce, or the SP reduce-scatter."""
        ops = (gemm,) if self.block.tp_overlap else None
        kind = CollectiveKind.REDUCE_SCATTER if self.block.sp else CollectiveKind.ALL_REDUCE
        self._comm(f"{gemm}_{'reduce_scatter' if self.block.sp else 'allreduce'}", kind, Phase.FORWARD,
                   ops if self.block.sp else ops, dst, elements)
        return dst

    def backward(self) -> None:
        """The backward's collectives, last op first (see the module docstring)."""
        for gemm, row in zip(reversed(self.gathered), ("fc2", "out_proj")):
            if self.block.sp:
                self._comm(f"{row}_reduce_scatter.backward", CollectiveKind.ALL_GATHER, Phase.BACKWARD,
                           (row,) if self.block.tp_overlap else None)
                self._comm(f"{gemm}_input_regather", CollectiveKind.ALL_GATHER, Phase.BACKWARD, (gemm,))
                self._comm(f"{gemm}_input_allgather.backward", CollectiveKind.REDUCE_SCATTER, Phase.BACKWARD, (gemm,))
            else:
                self._comm(f"{gemm}_input.backward", CollectiveKind.ALL_REDUCE, Phase.BACKWARD, (gemm,), fraction=0.5)


def activation_bytes_korthikanti(s: Shapes, t, sp: bool, selective: bool, dtype_bytes: int = 2):
    """Korthikanti et al.'s bytes per block (Eq. 2 with t, sp, selective), for 16-bit activations."""
    sbh = s.micro_batch * s.seq_len * s.hidden
    core = 5 * s.heads * s.seq_len / (s.hidden * t) * (0 if selective else 1)
    linear = 34 / t if sp else 10 + 24 / t
    return sbh * (linear + core) * dtype_bytes / 2


def with_dropout(block: Block, dropout: float) -> Block:
    return replace(block, dropout=dropout)
