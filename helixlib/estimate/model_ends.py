"""The two ends of the model in closed form, one rank of a tensor-parallel group of ``t``: the
input embedding (first pipeline stage) and the output layer with its loss (last stage).

* embedding (Megatron's ``VocabParallelEmbedding``): each rank gathers the rows of its ``V/t``
  slice of the table ``[T, h]`` and the partial results are all-reduced (reduce-scattered with
  sequence parallelism); the learned position embedding is added and dropped out. Backward
  scatters the gradient rows into the table's gradient.
* output layer: the final LayerNorm, the logits GEMM ``[T,h]·[h,V/t]`` against the (tied)
  embedding table, and the vocabulary-parallel cross-entropy over fp32 logits: a copy to fp32,
  the max (an all-reduce of ``[T]``), exp, the sum (another), the target logit (a third), the
  normalisation; about 34 bytes per logit in forward and 22 in backward (softmax minus one-hot,
  times the incoming gradient, back to 16 bits). The GEMM's backward is twice its forward.
"""

from __future__ import annotations

import numpy as np

from helixlib.estimate.strategies import Shapes, world_nodes
from helixlib.estimate.workload import Program, ProgramBuilder
from helixlib.plan.names import FLOPS_PER_ELEMENT, CollectiveKind, MeshDim, OpKind

CE_FORWARD_BYTES = 34  # per fp32 logit: copy to fp32 (2 + 4), max (4), subtract (8), exp (8), sum (4), normalise (8)
CE_BACKWARD_BYTES = 22  # softmax − one-hot and × grad in place (8 + 8), back to 16 bits (4 + 2)
MASK_BYTES = 1


def embedding_program(s: Shapes, vocab: int, gpus_per_node: int, dtype_bytes: int, sp: bool = False,
                      dropout: float = 0.0) -> Program:
    """The first stage's embedding lookup for one micro-batch (``s.world_size`` = t)."""
    T, D, t = s.tokens, s.hidden, s.world_size
    Ts = T // t if sp else T
    P = ProgramBuilder(dtype_bytes)
    beta = P.beta
    P.tensor("tokens", T)  # ids; only their count matters
    P.elementwise("word_embedding", OpKind.EMBEDDING, [], "e_part", T * D, 0, extra_bytes=T * D * beta,
                  backward_bytes=3 * T * D * beta)  # reads the gathered rows, writes them
    P.params += vocab // t * D + s.seq_len * D  # the table's slice and the position table
    kind = CollectiveKind.REDUCE_SCATTER if sp else CollectiveKind.ALL_REDUCE
    P.comm(f"embedding_{kind}", kind, MeshDim.WORLD, t, world_nodes(t, gpus_per_node), T * D * beta, output="e",
           out_elements=Ts * D)
    drop = dropout > 0
    P.elementwise("position_add_dropout", OpKind.DROPOUT if drop else OpKind.ADD, ["e"], "x", Ts * D,
                  FLOPS_PER_ELEMENT[OpKind.ADD] + (1 if drop else 0), extra_bytes=Ts * D * (MASK_BYTES if drop else 0),
                  backward_bytes=Ts * D * (3 * beta + (MASK_BYTES if drop else 0)), saves=())
    return P.build(communicators=np.ones_like(np.asarray(t)), block_input="tokens")


def head_program(s: Shapes, vocab: int, gpus_per_node: int, dtype_bytes: int, sp: bool = False) -> Program:
    """The last stage's final LayerNorm, logits and loss for one micro-batch."""
    T, D, t = s.tokens, s.hidden, s.world_size
    Ts = T // t if sp else T
    v = vocab // t
    nodes = world_nodes(t, gpus_per_node)
    P = ProgramBuilder(dtype_bytes)
    beta = P.beta
    P.tensor("y", Ts * D)
    P.elementwise("final_ln", OpKind.LAYERNORM, ["y"], "hf", Ts * D, FLOPS_PER_ELEMENT[OpKind.LAYERNORM],
                  params=2 * D, backward_bytes=5 * Ts * D * beta)
    src = "hf"
    if sp:
        src = P.comm("final_ln_allgather", CollectiveKind.ALL_GATHER, MeshDim.WORLD, t, nodes, T * D * beta,
                     output="hf_full", out_elements=T * D)
    else:
        P.comm("final_ln_input.backward", CollectiveKind.ALL_REDUCE, MeshDim.WORLD, t, nodes, T * D * beta,
               phase="backward")
    P.matmul("logits", [src], "logits", 1, T, D, v, weight=False, saves=("hf",))
    P.elementwise("cross_entropy", OpKind.CROSS_ENTROPY, ["logits"], "loss_probs", T * v, 5,
                  extra_bytes=T * v * CE_FORWARD_BYTES - 2 * T * v * beta, saves=(),
                  backward_bytes=T * v * CE_BACKWARD_BYTES)
    P.sizes["loss_probs"] = T * v * 4  # fp32 softmax kept for backward
    P.ops[-1].saves = ("loss_probs",)
    for name in ("max", "sum", "target"):
        P.comm(f"cross_entropy_{name}", CollectiveKind.ALL_REDUCE, MeshDim.WORLD, t, nodes, T * 4)
    return P.build(communicators=np.ones_like(np.asarray(t)), block_input="y")
