"""Memory of one rank for the whole model: what it holds at its peak, term by term.

Per rank, for ``layers`` blocks of one Program (one micro-batch of ``b`` sequences):

* weights: the parameters the rank stores × β (the plan's shards: Q/K/V columns, Wo
  rows, W1 columns, W2 rows are split; LayerNorms and row-parallel biases replicated);
* training states: gradients (β per parameter) and Adam: fp32 first and second
  moments (8 bytes) plus an fp32 master copy when weights are 16-bit (4 bytes) —
  2 + 2 + 12 = 16 bytes per bf16 parameter (Rajbhandari et al., "ZeRO", arXiv 1910.02054, §3.1);
* stored activations (training): what autograd keeps for each block (see
  ``helixlib.estimate.workload``); under full recompute only each block's input is kept, and one
  block's activations are rebuilt at a time during backward. Replicated tensors (the
  block input, LayerNorm outputs, the residuals — ``[b, L, D]`` each) are **not** divided
  over the ranks; the score tensor ``[b, H/n, L, L]`` is divided by n only;
  For the helix block (reduce_scores, no flash, F = 4D, bf16) that is, per rank,
  ``b·L·D·(8 + 24/G) + 2·b·(H/n)·L²`` bytes: Korthikanti et al.'s
  ``L·B·D·(10 + 24/t) + 5·H·L²·B/t`` without the dropout masks and outputs this block does
  not have, and with the score term divided by n instead of t;
* working set: the largest single op's inputs + output, plus the block input that stays
  alive beside it (forward transients; backward's gradient transients have the same
  sizes: the gradient of an op's output and of its inputs);
* communication buffers: NCCL's per-communicator buffers and any staging a program
  declares (flash tile reductions, gathered weights);
* reserved: CUDA context, workspaces, allocator slack (the device preset's figure).

Everything but the weights, training states and NCCL buffers grows linearly with the
micro-batch ``b``; ``largest_micro_batch`` uses that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.estimate.hardware import Cluster
from helixlib.estimate.workload import Program


def optimizer_bytes_per_param(dtype_bytes: int) -> int:
    """Adam m and v (at least fp32) plus an fp32 master copy for 16-bit weights."""
    return 2 * max(4, dtype_bytes) + (4 if dtype_bytes < 4 else 0)


@dataclass
class MemoryBreakdown:
    weights: object
    gradients: object
    optimizer: object
    activations: object  # stored for backward, all blocks
    working: object  # largest transient of one block
    comm_buffers: object
    reserved: object
    capacity: float  # the device's memory

    @property
    def total(self):
        return (self.weights + self.gradients + self.optimizer + self.activations + self.working
                + self.comm_buffers + self.reserved)

    @property
    def fits(self):
        return self.total <= self.capacity

    @property
    def headroom(self):
        return self.capacity - self.total

    TERMS = ("weights", "gradients", "optimizer", "activations", "working", "comm_buffers", "reserved")

    def to_dict(self) -> dict:
        d = {t: float(getattr(self, t)) for t in self.TERMS}
        d.update(total=float(self.total), capacity=float(self.capacity), fits=bool(self.fits),
                 headroom=float(self.headroom))
        return d


def stored_bytes(prog: Program, selective: bool = False):
    """Bytes autograd keeps for one block's backward (each tensor once). ``selective``: without what the
    attention core's ops (recomputed in backward) save, other than their inputs from outside the core."""
    core = {op.output for op in prog.ops if op.selective} if selective else set()
    core |= {t for op in prog.ops if op.selective and selective for t in op.saves if t.endswith("mask")}
    names = dict.fromkeys(t for op in prog.ops for t in op.saves if t not in core)
    return sum(prog.sizes[t] for t in names)


def working_bytes(prog: Program):
    """Largest op footprint (inputs + output) plus the block input alive beside it."""
    peak = 0
    for op in prog.ops:
        peak = np.maximum(peak, sum(prog.sizes[t] for t in op.inputs) + prog.sizes[op.output])
    return peak + prog.sizes[prog.block_input]


def program_memory(prog: Program, cluster: Cluster, layers, training=False, recompute=False) -> MemoryBreakdown:
    training = np.asarray(training, dtype=float)
    recompute = np.asarray(recompute, dtype=float)
    beta = prog.dtype_bytes
    params = layers * prog.weight_params
    per_block = stored_bytes(prog)
    kept = recompute * (layers * prog.sizes[prog.block_input] + per_block) + (1 - recompute) * layers * per_block
    return MemoryBreakdown(
        weights=params * beta,
        gradients=training * params * beta,
        optimizer=training * params * optimizer_bytes_per_param(beta),
        activations=training * kept,
        working=working_bytes(prog),
        comm_buffers=(prog.communicators * cluster.communicator_bytes + prog.extra_buffer_bytes
                      + training * prog.backward_buffer_bytes),
        reserved=cluster.device.reserved_bytes,
        capacity=cluster.device.memory_bytes,
    )
