"""The deployment plan's headline figures, computed once, for both out-projection variants.

Notebook 04 (the runtime script, corrected) and notebook 07 (the audit) quote the same few
figures: forward time of one layer, communication against compute, speed-up over one GPU and
memory per GPU. They come from here, so they cannot disagree, and each names its variant:

* ``allreduce`` — Megatron's row-parallel out-projection (one all-reduce over the G GPUs);
* ``concat`` — the plan's literal dataflow (gather the segments, then the groups, then a
  column-parallel projection and a final gather). The audit reads the plan literally: concat.

Every figure is the audit check of the same name (``helixlib.audit.checks_cost``) on the
deployment with that variant, so the claims table and the headline agree by construction.

Three memory figures, labelled (the workbook once printed them unlabelled, and they differ):

* ``plan_inventory`` — the Plan's inventory of one block on one rank: every tensor the block
  produces, each counted once (one layer's weights, activations, the scores ``[B, h_g, L, L]``,
  collective buffers), nothing freed: what autograd would keep for one block's backward. A size
  list, not the peak of a forward pass.
* ``per_gpu_peak`` — the estimator's peak per GPU for a forward pass of the whole model over the
  whole batch: every layer's weights, plus the largest op's inputs and output with the block input
  beside it (forward keeps nothing for a backward), NCCL buffers and the reserved memory.
* ``one_gpu_peak`` — the same peak on one GPU holding the whole block (1 × 1): the claim "16×
  reduction in per-GPU memory" is ``one_gpu_peak / per_gpu_peak``.
"""

from __future__ import annotations

from dataclasses import dataclass

from helixlib.audit.checks_cost import _estimate, communication_share, speedup
from helixlib.audit.claims import load_claims
from helixlib.audit.context import AuditContext
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.plan import OUTPUT_MODES, OutputMode


@dataclass(frozen=True)
class Headline:
    """One variant's figures: forward of one block over the whole batch B (one micro-batch, the
    setting of the audit's claims), dataflow estimate, on the deployment's cluster."""

    output: str  # allreduce | concat
    hardware: str
    forward_per_layer_s: float
    compute_per_layer_s: float
    communication_per_layer_s: float
    communication_over_compute: float  # communication / compute, no overlap
    speedup: float  # one GPU's time / G GPUs' time, per layer (dataflow)
    plan_inventory_bytes: float  # see the module docstring
    per_gpu_peak_bytes: float
    one_gpu_peak_bytes: float
    device_bytes: float
    plan_inventory_terms: dict  # weights, activations, scores, buffers (bytes)
    per_gpu_terms: dict  # the estimator's MemoryBreakdown terms (bytes)

    @property
    def memory_reduction(self) -> float:
        """The audit's ``memory_reduction`` check (the same two estimates)."""
        return self.one_gpu_peak_bytes / self.per_gpu_peak_bytes


@dataclass(frozen=True)
class Headlines:
    """Both variants, and which one the audit reads the plan as."""

    audited: str
    variants: dict  # output mode -> Headline

    def __getitem__(self, output: str) -> Headline:
        return self.variants[output]

    @property
    def audited_figures(self) -> Headline:
        return self.variants[self.audited]


def _variant(context: dict, output: str) -> Headline:
    ctx = AuditContext(dict(context, output=output))
    est = _estimate(ctx)
    one = _estimate(ctx, head_groups=1, dim_segments=1)
    inv = max(ctx.plan.memory(), key=lambda m: m.total_bytes)
    # the audit checks themselves: the claims table shows these very values
    share = communication_share(ctx).value
    ratio = speedup(ctx).value
    per_gpu, one_gpu = float(est.memory.total), float(one.memory.total)
    pl = est.per_layer
    return Headline(output, est.cluster.name, float(pl["time_dataflow"]), float(pl["compute"]),
                    float(pl["communication"]), float(share), float(ratio), float(inv.total_bytes), per_gpu, one_gpu,
                    float(est.cluster.device.memory_bytes),
                    {"weights": inv.weights_bytes, "activations": inv.activation_bytes, "scores": inv.score_bytes,
                     "buffers": inv.buffer_bytes},
                    {t: float(v) for t, v in est.memory.to_dict().items() if t in MemoryBreakdown.TERMS})


def headline_figures(context: dict | None = None) -> Headlines:
    """The deployment's headline figures for both output variants. ``context``: a claims file's
    context (model, head_groups, dim_segments, qk_mode, output, hardware); default the shipped
    claims file's, i.e. the deployment plan under audit."""
    context = dict(load_claims().context if context is None else context)
    audited = context.get("output", OutputMode.CONCAT)
    return Headlines(audited, {out: _variant(context, out) for out in OUTPUT_MODES})
