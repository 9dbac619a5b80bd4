"""``python -m helixlib estimate``: time and memory of the plan on a cluster, as tables or JSON."""

from __future__ import annotations

import argparse

from helixlib.commands.common import EXIT_OK, add_plan_args, plan_from_args, print_json
from helixlib.core.errors import positive_int
from helixlib.core.presets import DEFAULT_CLUSTER
from helixlib.estimate.estimator import FLASH_BLOCK, Estimate, estimate
from helixlib.estimate.hardware import hardware_names, load_cluster
from helixlib.views.reports import estimate_report


def add_args(p: argparse.ArgumentParser) -> None:
    add_plan_args(p)
    p.add_argument("--hardware", default=DEFAULT_CLUSTER,
                   help=f"cluster preset or YAML file (default {DEFAULT_CLUSTER}; "
                        f"known: {', '.join(hardware_names('cluster'))})")
    p.add_argument("--training", action="store_true", help="a training step (forward + backward) instead of a forward")
    p.add_argument("--flash", action="store_true", help="fused (flash) attention: no L x L tensor in memory")
    p.add_argument("--recompute", action="store_true", help="full activation recompute (keep only block inputs)")
    p.add_argument("--micro-batch", default=None, help="sequences per micro-batch (must divide the batch)")
    p.add_argument("--flash-block", default=str(FLASH_BLOCK), help=f"query rows per flash tile (default {FLASH_BLOCK})")


def estimate_from_args(a: argparse.Namespace) -> Estimate:
    plan = plan_from_args(a)
    return estimate(plan, load_cluster(a.hardware), a.training, a.flash, a.recompute,
                    None if a.micro_batch is None else positive_int("micro_batch", a.micro_batch),
                    positive_int("flash_block", a.flash_block))


def run(a: argparse.Namespace) -> int:
    est = estimate_from_args(a)
    if a.json:
        print_json(est.to_dict())
    else:
        print(estimate_report(est))
    return EXIT_OK


