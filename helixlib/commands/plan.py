"""``python -m helixlib plan``: every rank's shard, the collectives in call order and the checks."""

from __future__ import annotations

import argparse

from helixlib.commands.common import EXIT_CHECK_FAILED, EXIT_OK, add_plan_args, plan_from_args, print_json
from helixlib.plan.checks import run_checks
from helixlib.views import kv_report
from helixlib.views.reports import plan_report

add_args = add_plan_args


def run(a: argparse.Namespace) -> int:
    plan = plan_from_args(a)
    checks = run_checks(plan)
    if a.json:
        print_json(plan.to_dict(checks))
    else:
        print(kv_report.plan_report(plan, checks) if kv_report.needs_kv_report(plan) else plan_report(plan, checks))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_CHECK_FAILED
