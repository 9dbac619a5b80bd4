"""A training-step estimate as one JSON-ready dictionary (what ``estimate --strategy ... --json`` prints)."""

from __future__ import annotations

from helixlib.estimate.memory import MemoryBreakdown
from helixlib.estimate.step import StepEstimate

STEP_CONVENTIONS = {
    "per_layer": "one transformer block, one micro-batch, the slowest rank: forward, and backward with its "
                 "recomputation and exposed collectives (dataflow: overlapped collectives hidden behind their windows)",
    "per_step": "the pipeline schedule over all micro-batches (m * max stage + (sum - max) / v), plus exposed "
                "data-parallel gradient reduction, the tied-embedding all-reduce and the optimizer",
    "model_flops": "matmuls, 2 per multiply-add, full s x s attention, logits, forward x3, no recompute (PaLM; "
                   "Korthikanti et al. 2022 Eq. 7; NVIDIA NeMo)",
    "hardware_flops": "what runs: model FLOPs plus recomputation, causal half skipped by flash kernels",
    "mfu": "model FLOPs / (step time x GPUs x dense peak of the dtype)",
    "memory": "the fullest pipeline stage (first or last), per GPU",
}


def step_to_dict(est: StepEstimate) -> dict:
    par, m = est.parallel, est.model
    blk = est.block
    gpus = par.world_size
    tokens = par.batch * m.seq_len
    ops = [{"name": r.op.name, "kind": r.op.kind, "flops": float(r.op.flops), "bytes": float(r.op.bytes),
            "efficiency": float(r.forward.efficiency), "forward_s": float(r.forward.time_s),
            "backward_s": float(r.backward_s)} for r in blk.ops]
    comms = [{"name": r.comm.name, "kind": r.comm.kind, "run": r.run, "group_size": int(r.comm.p),
              "nodes": int(r.comm.nodes), "bytes": float(r.comm.bytes), "time_s": float(r.time_s),
              "exposed_s": float(r.exposed_s)} for r in blk.comms if float(r.weight)]
    mem = est.memory
    return {
        "model": m.to_dict(),
        "hardware": {"cluster": est.cluster.name, "device": est.cluster.device.name,
                     "gpus_per_node": est.cluster.gpus_per_node, "nodes": -(-gpus // est.cluster.gpus_per_node)},
        "parallel": par.to_dict(),
        "training": est.training,
        "conventions": STEP_CONVENTIONS,
        "notes": [] if m.vocab is not None else ["the model has no vocabulary: embeddings, logits and loss left out"],
        "per_layer": {"forward_s": float(blk.forward_s), "backward_s": float(blk.backward_s),
                      "time_s": float(blk.dataflow_s), "compute_s": float(blk.compute_s),
                      "communication_s": float(blk.communication_s), "exposed_communication_s": float(blk.exposed_s),
                      "no_overlap_s": float(blk.no_overlap_s), "perfect_overlap_s": float(blk.perfect_overlap_s),
                      "ops": ops, "collectives": comms},
        "per_step": {"time_s": est.time_s, "pipeline_s": est.pipeline_s, "bubble_s": est.bubble_s,
                     "stage_s": list(est.stage_s), "p2p_per_micro_batch_s": est.p2p_s,
                     "data_parallel_s": est.dp_s, "data_parallel_exposed_s": est.dp_exposed_s,
                     "embedding_sync_s": est.embedding_sync_s, "optimizer_s": est.optimizer_s,
                     "model_flops": est.model_flops, "hardware_flops": est.hardware_flops,
                     "model_tflops_per_gpu": est.per_gpu(est.model_flops) / 1e12,
                     "hardware_tflops_per_gpu": est.per_gpu(est.hardware_flops) / 1e12,
                     "mfu": est.mfu, "hfu": est.hfu, "tokens_per_s": tokens / est.time_s,
                     "tokens_per_s_per_gpu": tokens / est.time_s / gpus},
        "memory": {"total_bytes": float(mem.total), "fits": bool(mem.fits), "capacity_bytes": float(mem.capacity),
                   "headroom_bytes": float(mem.headroom)}
                  | {f"{t}_bytes": float(getattr(mem, t)) for t in MemoryBreakdown.TERMS},
    }
