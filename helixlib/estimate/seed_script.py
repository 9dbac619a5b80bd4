"""The deployment plan's runtime script: reproduced exactly, then corrected term by term.

``data/seed_runtime_script.py`` is the plan's "Runtime Estimation" block, verbatim. It
prints ``Total Runtime: 0.18 seconds``. Read as the forward of one block over the whole
batch (B = 1024, L = 10000) on 16 A100s, it is::

    get_time(m, k, n) = m·k·n / (16 · 312e12)
    total = 2·(qkv + attn) + 2·(fc1 + fc2)
    qkv  = get_time(B·L, D, 512)         one projection of width h_g·d_s = 4·128
    attn = get_time(B·L·4, 128, L)       Q·Kᵀ over d_s = 128 for 4 heads
    fc1  = get_time(B·L, D, 2048),  fc2 = get_time(B·L, 2048, D)

``corrections(plan, cluster)`` changes one thing at a time; each step keeps named terms
(seconds) so a notebook can draw the waterfall, and the last step equals the
estimator's forward time of the same plan (no overlap). The audit cites these numbers.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import subprocess
import sys
from dataclasses import dataclass

from helixlib.core.presets import DATA_DIR
from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import Cluster
from helixlib.plan import Plan, QkMode

SEED_SCRIPT = DATA_DIR / "seed_runtime_script.py"
SEED_TERMS = {"qkv": ("mha_qkv",), "attention": ("mha_attn",), "fc1": ("mlp_fc1",), "fc2": ("mlp_fc2",)}


def run_seed_script() -> str:
    """Run the script as the plan gives it; return what it prints."""
    return subprocess.run([sys.executable, str(SEED_SCRIPT)], capture_output=True, text=True,
                          check=True).stdout.strip()


def seed_namespace() -> dict:
    """The script's variables after it ran (its print is swallowed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return runpy.run_path(str(SEED_SCRIPT))


def seed_terms() -> dict[str, float]:
    """The printed total split into its four terms (the script's outer ``2 *`` included)."""
    ns = seed_namespace()
    return {name: 2 * ns[var] for name, (var,) in SEED_TERMS.items()}


def seed_total() -> float:
    ns = seed_namespace()
    return ns["mha_total"] + ns["mlp_total"]


@dataclass
class Correction:
    name: str
    explanation: str
    terms: dict[str, float]  # seconds per named term after this step

    @property
    def total(self) -> float:
        return sum(self.terms.values())


def corrections(plan: Plan, cluster: Cluster) -> list[Correction]:
    """The seed figure, then one correction per step (see the module docstring).

    Steps 1-5 count FLOPs at the device's dense peak (the script's 312e12 is the A100's
    bf16 peak); from step 5 the terms are the plan's matmul FLOPs of one rank exactly.
    Steps 6-8 are the estimator's roofline, element-wise ops and forward collectives;
    step 9 (only when the batch does not fit) splits it into micro-batches that do."""
    m, part = plan.model, plan.partition
    B, L, D, F, G = m.batch, m.seq_len, m.hidden, m.mlp_hidden, plan.world_size
    h_g, d_s = m.heads // part.head_groups, m.head_dim // part.dim_segments
    peak = cluster.device.peak_flops(m.dtype)
    mac = {"qkv": B * L * D * h_g * d_s, "attention": B * L * h_g * d_s * L,
           "fc1": B * L * D * (F // G), "fc2": B * L * (F // G) * D}
    steps = [Correction("seed script", "as printed: get_time = m·k·n / (16 · 312e12), outer factor 2", seed_terms())]

    def step(name, explanation, **changes):
        terms = dict(steps[-1].terms)
        for k, v in changes.items():
            if v is None:
                terms.pop(k, None)
            else:
                terms[k] = v
        steps.append(Correction(name, explanation, terms))

    step("2 FLOPs per multiply-add",
         "get_time counts multiply-adds (the plan's text calls m·k·n '42.9 TFLOPs'); read the outer 2 as the "
         "missing 2 FLOPs per multiply-add and the total does not change",
         **{k: 2 * v / (G * peak) for k, v in mac.items()})
    step("shapes are already per GPU",
         f"512 = h_g·d_s, 4 heads, d_s = 128 and F/G = {F // G} are one rank's share: dividing by {G} GPUs "
         f"again makes every term {G}x too small",
         **{k: 2 * v / peak for k, v in mac.items()})
    scores_k = m.head_dim if part.qk_mode == QkMode.GATHER_QK else d_s
    step("Q, K and V", "mha_qkv is one projection; each rank runs three (Q, K and V) of the same shape",
         qkv=3 * 2 * mac["qkv"] / peak)
    over = ("the full d after gathering Q and K" if scores_k == m.head_dim
            else "d_s: partial scores, summed over the group (a collective, step 8)")
    step("scores and P·V",
         f"Q·Kᵀ contracts over {over}; the attention term also needs P·V, the same size again",
         attention=None, scores=2 * B * h_g * L * scores_k * L / peak, attn_v=2 * mac["attention"] / peak)
    step("out-projection", "the block ends with the row-parallel out-projection [B·L, h_g·d_s]·[h_g·d_s, D]",
         out_proj=2 * B * L * h_g * d_s * D / peak)
    est = estimate(plan, cluster)
    ops, comms = _forward_terms(est)
    matmuls = {r.op.name for r in est.timing.ops if r.op.kind == "matmul"}
    step("achievable matmul throughput",
         "a roofline per GEMM: FLOPs at peak x efficiency (by shape) or bytes at HBM bandwidth, whichever is slower",
         qkv=None, **{k: v for k, v in ops.items() if k in matmuls})
    step("memory-bound ops", "LayerNorms, softmax over every score, GELU and the residual adds run at HBM bandwidth",
         **{k: v for k, v in ops.items() if k not in matmuls})
    listed = ", ".join(f"{r['name']} ({r['kind'].replace('_', '-')} over {r['group_size']})"
                       for r in est.collective_rows())
    step("communication", f"the forward's collectives — {listed} — on the cluster's links, not overlapped "
         "with compute", **comms)
    if est.largest_micro_batch is not None and est.largest_micro_batch < B:
        b = est.largest_micro_batch
        ops, comms = _forward_terms(estimate(plan, cluster, micro_batch=b))
        step("micro-batches that fit", f"B = {B} does not fit in {cluster.device.name} memory; {B // b} "
             f"micro-batches of {b} do (more calls: more latency)", **ops, **comms)
    return steps


def _forward_terms(est) -> tuple[dict[str, float], dict[str, float]]:
    """Forward seconds per op and per collective of the priced rank, over the whole batch."""
    k = est.micro_steps
    ops = {r.op.name: k * float(r.forward.time_s) for r in est.timing.ops}
    comms = {r.comm.name: k * float(r.time_s) for r in est.timing.comms if r.run == "forward"}
    return ops, comms
