"""``python -m helixlib estimate``: time and memory on a cluster, as tables or JSON.

Two questions, one command: without ``--strategy``, the Plan (``-n``, ``-m``, ``--qk-mode``, ...) priced
block by block (``helixlib.estimate.estimator``); with ``--strategy``, a whole training step of any
strategy the design space knows with tensor, pipeline and data parallelism
(``helixlib.estimate.step``)."""

from __future__ import annotations

import argparse

from helixlib.commands.common import add_plan_args, plan_from_args, print_result
from helixlib.commands.estimate_decode import add_decode_args, run_decode
from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.core.presets import DEFAULT_CLUSTER
from helixlib.estimate.estimator import FLASH_BLOCK, Estimate, estimate
from helixlib.estimate.hardware import hardware_names, load_cluster
from helixlib.plan.names import Recompute, StepPhase, Strategy
from helixlib.views.reports import estimate_report

RECOMPUTE = tuple(map(str, Recompute))


def add_args(p: argparse.ArgumentParser) -> None:
    add_plan_args(p)
    p.add_argument("--hardware", default=DEFAULT_CLUSTER,
                   help=f"cluster preset or YAML file (default {DEFAULT_CLUSTER}; "
                        f"known: {', '.join(hardware_names('cluster'))})")
    p.add_argument("--training", action="store_true", help="a training step (forward + backward) instead of a forward")
    p.add_argument("--flash", action="store_true", help="fused (flash) attention: no L x L tensor in memory")
    p.add_argument("--recompute", nargs="?", const=Recompute.FULL.value, default=None,
                   help=f"activation recomputation: {' | '.join(RECOMPUTE)} (the bare flag: full)")
    p.add_argument("--micro-batch", default=None, help="sequences per micro-batch (must divide the batch)")
    p.add_argument("--flash-block", default=str(FLASH_BLOCK), help=f"query rows per flash tile (default {FLASH_BLOCK})")
    step = p.add_argument_group("a whole training step (with --strategy)")
    step.add_argument("--strategy", default=None, help=f"one of {', '.join(map(str, Strategy))}")
    for flag, what in (("tensor-parallel", "t, ranks splitting each block (helix: n x m)"),
                       ("pipeline-parallel", "p, pipeline stages"), ("data-parallel", "d, model replicas"),
                       ("virtual-stages", "v, interleaved model chunks per stage")):
        step.add_argument(f"--{flag}", default=None, help=f"{what} (default 1)")
    step.add_argument("--global-batch", default=None, help="sequences per step (default micro-batch x d)")
    step.add_argument("--zero", default="0", help="0 | 1 (optimizer states over d) | 2 (and gradients)")
    for flag, what in (("dp-overlap", "gradient reduction behind the last backward"),
                       ("tp-overlap", "tensor-parallel collectives behind their GEMMs (userbuffers)"),
                       ("p2p-overlap", "pipeline sends behind compute")):
        step.add_argument(f"--{flag}", action="store_true", help=what)
    add_decode_args(p)  # --phase decode and its options (helixlib.commands.estimate_decode): last


def estimate_from_args(a: argparse.Namespace) -> Estimate:
    plan = plan_from_args(a)
    recompute = a.recompute is not None and one_of("recompute", a.recompute, RECOMPUTE) != Recompute.NONE
    if a.recompute == Recompute.SELECTIVE:
        raise HelixInputError("recompute", "selective recompute is priced for a training step: add --strategy",
                              a.recompute)
    return estimate(plan, load_cluster(a.hardware), a.training, a.flash, recompute,
                    None if a.micro_batch is None else positive_int("micro_batch", a.micro_batch),
                    positive_int("flash_block", a.flash_block))


def step_from_args(a: argparse.Namespace):
    """The training-step estimate the ``--strategy`` options describe."""
    from helixlib.estimate.step import Parallel, estimate_step
    from helixlib.plan.model import load_model

    cluster = load_cluster(a.hardware)
    causal = None if a.causal is None else a.causal == "true"
    model = load_model(a.model, seq_len=a.seq_len, layers=a.layers, dtype=a.dtype, causal=causal)
    opt = lambda flag, default=1: default if getattr(a, flag) is None else positive_int(flag, getattr(a, flag))
    strategy = one_of("strategy", a.strategy, tuple(map(str, Strategy)))
    helix = strategy == Strategy.HELIX
    n = positive_int("head_groups", a.head_groups)
    m = positive_int("dim_segments", 4 if a.dim_segments is None else a.dim_segments)
    tensor = opt("tensor_parallel", n * m if helix else 1)
    if helix and tensor != n * m:
        raise HelixInputError("tensor_parallel", f"must be n x m ({n} x {m}) for the helix strategy", tensor)
    zero = positive_int("zero", a.zero, minimum=0)
    par = Parallel(strategy=strategy, tensor=tensor, pipeline=opt("pipeline_parallel"), data=opt("data_parallel"),
                   micro_batch=opt("micro_batch"), global_batch=opt("global_batch", None),
                   virtual=opt("virtual_stages"),
                   recompute=one_of("recompute", a.recompute or Recompute.NONE.value, RECOMPUTE), flash=a.flash,
                   zero=zero, dp_overlap=a.dp_overlap, tp_overlap=a.tp_overlap, p2p_overlap=a.p2p_overlap,
                   head_groups=n if helix else None, qk_mode=a.qk_mode)
    return estimate_step(model, par, cluster, training=a.training)


def run(a: argparse.Namespace) -> int:
    if a.phase == StepPhase.DECODE:
        return run_decode(a)
    if a.strategy is not None:
        from helixlib.estimate.step_report import step_to_dict
        from helixlib.views.estimate_step_views import step_report

        est = step_from_args(a)
        return print_result(a, lambda: step_to_dict(est), lambda: step_report(est))
    est = estimate_from_args(a)
    return print_result(a, est.to_dict, lambda: estimate_report(est))
