"""The exercises of notebooks 08 (decoding) and 09 (the estimator against published runs), answered
by helixlib; see :mod:`helixlib.workbook.exercises`. ``tests/test_exercises.py`` recomputes each."""

from __future__ import annotations

from helixlib.core.units import seconds, si
from helixlib.estimate.decode_study import STUDY_CLUSTER, STUDY_CONTEXT, exercise_answers
from helixlib.estimate.hardware import load_cluster
from helixlib.estimate.step import Parallel, StepEstimate, estimate_step
from helixlib.plan.model import load_model
from helixlib.validation.published import evaluate, load_rows
from helixlib.workbook.exercises import Answer

# ---- 08 · decoding --------------------------------------------------------------------------


def tp_kv_copies(model: str, cluster: str = STUDY_CLUSTER, context: int = STUDY_CONTEXT, batch: int = 8) -> Answer:
    """Plain TP over 64 GPUs: how many copies of the KV cache, and one sequence's cache per GPU."""
    a = exercise_answers(model, cluster, context, batch)
    kv_heads = load_model(model).kv_heads
    return Answer(a["tp64_kv_copies"],
                  f"64 GPUs split the query heads but there are only K = {kv_heads} KV heads: each GPU keeps the "
                  f"KV head its query heads read, so every KV head is held 64 / {kv_heads} = "
                  f"{a['tp64_kv_copies']:.0f} times. Each GPU holds one head's K and V at every one of the "
                  f"{context:,} positions of every layer: {si(a['tp64_kv_bytes_per_sequence'], 'B')} per sequence.")


def comm_bytes_ratio(model: str, cluster: str = STUDY_CLUSTER, context: int = STUDY_CONTEXT,
                     batch: int = 8) -> Answer:
    """Head-dim 8 x 8's partial-score all-reduce against helix-kv 8 x 8's All-to-All, bytes per layer."""
    a = exercise_answers(model, cluster, context, batch)
    return Answer(a["bytes_ratio"],
                  f"helix 8 x 8 all-reduces {si(a['head_dim_scores_bytes'], 'B')} of partial scores per layer "
                  f"(one score per position: it grows with S); helix-kv 8 x 8 sends "
                  f"{si(a['helix_kv_all_to_all_bytes'], 'B')} (one partial output row and its log-sum-exp per "
                  f"head: independent of S). The ratio, {a['bytes_ratio']:,.0f}, is set by S = {context:,} "
                  f"positions against the d_v + 1 numbers of one output row.")


def kv_max_batch(model: str, cluster: str = STUDY_CLUSTER, context: int = STUDY_CONTEXT, batch: int = 8) -> Answer:
    """helix-kv TP_A 8 x KVP 8: the largest batch that fits at ``context``, and its TTL there."""
    a = exercise_answers(model, cluster, context, batch)
    return Answer(a["helix_kv_8x8_max_batch"],
                  f"B = {a['helix_kv_8x8_max_batch']} sequences fit, at a TTL of "
                  f"{seconds(a['helix_kv_8x8_ttl_at_max_batch_s'])} (no HOP-B). What fills the memory is the KV "
                  f"cache — each GPU holds 1/8 of the positions of one KV head for every sequence and layer — "
                  f"beside 1/64 of the weights.")


# ---- 09 · the estimator against published runs ----------------------------------------------


def study_step(model: str, gpus: int, hardware: str, global_batch: int = 64) -> StepEstimate:
    """The step notebook 09 takes apart: Megatron with sequence parallelism, TP 8, ``gpus // 8`` stages."""
    par = Parallel("megatron-sp", tensor=8, pipeline=gpus // 8, data=1, micro_batch=1, global_batch=global_batch,
                   recompute="selective")
    return estimate_step(load_model(model), par, load_cluster(hardware))


def bubble_share(model: str, gpus: int, hardware: str) -> Answer:
    """The share of the step the pipeline's fill and drain take (1F1B, no interleaving)."""
    est = study_step(model, gpus, hardware)
    p, m = est.parallel.pipeline, est.parallel.micro_batches
    share = est.bubble_s / est.time_s
    return Answer(share, f"p = {p} stages, m = {m} micro-batches: the bubble is (p − 1) stage-times, "
                         f"{seconds(est.bubble_s)} of a {seconds(est.time_s)} step = {share:.1%} "
                         f"(the textbook (p − 1)/m = {(p - 1) / m:.1%} of the compute; the stages are not quite "
                         f"equal: the first holds the embedding, the last the logits).")


def mfu_by_hand(model: str, gpus: int, hardware: str) -> Answer:
    """MFU of the study step: model FLOPs / (step time x GPUs x dense peak)."""
    est = study_step(model, gpus, hardware)
    peak = est.cluster.device.peak_flops(est.model.dtype)
    return Answer(est.mfu, f"model FLOPs per step {si(est.model_flops, 'FLOP')} (3 × the forward's matmuls, "
                           f"attention over the full square, logits; no recomputation counted) / "
                           f"({seconds(est.time_s)} × {gpus} GPUs × {si(peak, 'FLOP/s')}) = {est.mfu:.1%}.")


def largest_miss() -> Answer:
    """The fully specified published time or throughput the estimator misses by the most (relative
    error; utilisation is judged in points, not here)."""
    _, rows = load_rows()
    worst = max((r for r in evaluate(rows) if r["specified"] and r["points"] is None), key=lambda r: abs(r["error"]))
    return Answer(worst["id"], f"{worst['id']} ({worst['quantity']}, {worst['hardware']}, {worst['gpus']} GPUs): "
                               f"published {worst['published']:.4g}, predicted {worst['predicted']:.4g}, "
                               f"{worst['error']:+.1%}. Section 3 says why.")
