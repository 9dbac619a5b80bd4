"""Memory per GPU of a training step: the fullest pipeline stage, term by term.

* weights: the stage's parameters (its blocks, and the embedding table's ``V/t`` slice on the first
  and last stage) × β; gradients: × 4 bytes (fp32 main gradients) for bf16, × β for fp16 (Megatron
  keeps fp16 gradients unless told otherwise); optimizer: fp32 master weights and Adam's two moments,
  12 bytes per parameter (Rajbhandari et al., "ZeRO", arXiv 1910.02054), divided over the ``d``
  data-parallel ranks with ``zero ≥ 1`` (gradients too with ``zero = 2``);
* activations: what backward keeps for one block (``helixlib.estimate.memory.stored_bytes``; under
  selective recompute without what the attention core makes, under full recompute only each block's
  input plus one block's worth while it is recomputed), for the micro-batches in flight: the first
  stage of 1F1B holds ``min(p, m)`` micro-batches of its ``L/p`` blocks, and interleaving ``v`` chunks
  raises that by ``1 + (p − 1)/(p·v)`` (Korthikanti et al. 2022, arXiv 2205.05198, §4.2.3); plus the
  embedding's and the loss's saved tensors on the first and last stage;
* working set, communication buffers (one NCCL communicator per tensor-, data- and pipeline-parallel
  group the rank is in) and the device's reserved memory, as ``helixlib.estimate.memory``.
"""

from __future__ import annotations

from helixlib.estimate.hardware import Cluster
from helixlib.estimate.memory import MemoryBreakdown, stored_bytes, working_bytes
from helixlib.estimate.workload import Program
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import Recompute

MASTER_AND_ADAM_BYTES = 12


def training_memory(model: ModelConfig, par, cluster: Cluster, prog: Program, stage_params: list[float],
                    training: bool, emb_prog: Program | None = None,
                    head_prog: Program | None = None) -> MemoryBreakdown:
    """The largest of the first and the last stage (see the module docstring)."""
    p, v, d = par.pipeline, par.virtual, par.data
    layers = model.layers // p
    in_flight = min(p, par.micro_batches) * (1 + (p - 1) / (p * v) if v > 1 else 1)
    block = float(stored_bytes(prog, selective=par.recompute == Recompute.SELECTIVE))
    if par.recompute == Recompute.FULL:
        kept = layers * in_flight * float(prog.sizes[prog.block_input]) + block
    else:
        kept = layers * in_flight * block
    grad_bytes = 4 if model.dtype == "bf16" else model.dtype_bytes
    communicators = sum(1 for n in (par.tensor, par.data, par.pipeline) if n > 1)
    best = None
    for stage, extra in ((0, emb_prog), (p - 1, head_prog)):
        params = stage_params[stage]
        ends = 0.0 if extra is None else float(stored_bytes(extra)) * (in_flight if stage == 0 else 1)
        working = max(float(working_bytes(prog)), 0.0 if extra is None else float(working_bytes(extra)))
        mem = MemoryBreakdown(
            weights=params * model.dtype_bytes,
            gradients=training * params * grad_bytes / (d if par.zero >= 2 else 1),
            optimizer=training * params * MASTER_AND_ADAM_BYTES / (d if par.zero >= 1 else 1),
            activations=training * (kept + ends),
            working=working,
            comm_buffers=communicators * cluster.communicator_bytes + float(prog.extra_buffer_bytes)
            + training * float(prog.backward_buffer_bytes),
            reserved=cluster.device.reserved_bytes,
            capacity=cluster.device.memory_bytes,
        )
        if best is None or mem.total > best.total:
            best = mem
    return best
