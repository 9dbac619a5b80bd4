"""``python -m helixlib <command>``: plan, run, audit, dag, estimate, calibrate.

Bad input prints one line, ``error: <field>: <rule>, got <value>``, and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from helixlib.core.errors import HelixInputError
from helixlib.core.units import table
from helixlib.plan.build import Plan, build_plan
from helixlib.plan.model import load_model
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES, Partition
from helixlib.views import tables

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def add_plan_args(p: argparse.ArgumentParser, model: str = "helix-70b") -> None:
    """Options every command that builds a Plan shares."""
    p.add_argument("--model", default=model, help=f"preset name or YAML file (default {model})")
    p.add_argument("--head-groups", "-n", default="4", help="n, head groups (default 4)")
    p.add_argument("--dim-segments", "-m", default="4", help="m, head-dim segments (default 4)")
    p.add_argument("--qk-mode", default="reduce_scores",
                   help=f"one of {', '.join(QK_MODES)}; segment_local is the plan's literal (incorrect) dataflow")
    p.add_argument("--output", default="allreduce", help=f"one of {', '.join(OUTPUT_MODES)}")
    p.add_argument("--world-size", default=None, help="check that n x m equals this many ranks")
    for flag in ("seq-len", "batch", "layers"):
        p.add_argument(f"--{flag}", default=None, help=f"override the preset's {flag.replace('-', '_')}")
    p.add_argument("--dtype", default=None, help="override the preset's dtype (fp64, fp32, bf16, fp16)")
    p.add_argument("--causal", default=None, choices=("true", "false"), help="override the preset's causal")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def plan_from_args(a: argparse.Namespace) -> Plan:
    causal = None if a.causal is None else a.causal == "true"
    model = load_model(a.model, seq_len=a.seq_len, batch=a.batch, layers=a.layers, dtype=a.dtype, causal=causal)
    part = Partition(a.head_groups, a.dim_segments, a.qk_mode, a.output)
    return build_plan(model, part, a.world_size)


def _print_plan(plan: Plan, checks) -> None:
    m, p = plan.model, plan.partition
    print(f"{m.name}: D={m.hidden} H={m.heads} d={m.head_dim} F={m.mlp_hidden} L={m.seq_len} B={m.batch} {m.dtype}")
    print(f"partition: n={p.head_groups} head groups x m={p.dim_segments} dim segments = {plan.world_size} ranks; "
          f"qk_mode={p.qk_mode}, output={p.output}\n")
    print(table(tables.rank_rows(plan), tables.RANK_HEADER), end="\n\n")
    print(table(tables.collective_rows(plan), tables.COLLECTIVE_HEADER), end="\n\n")
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")


def cmd_plan(a: argparse.Namespace) -> int:
    from helixlib.plan.checks import run_checks

    plan = plan_from_args(a)
    checks = run_checks(plan)
    if a.json:
        json.dump(plan.to_dict(checks), sys.stdout)
        print()
    else:
        _print_plan(plan, checks)
    return 0 if all(c.ok for c in checks) else 1


def _lazy(module: str, name: str):
    """Import a command's module only when it runs (``plan`` needs no torch.distributed)."""
    def run(a):
        import importlib
        return getattr(importlib.import_module(module), name)(a)
    return run


def _lazy_args(module: str, name: str):
    def add(p):
        import importlib
        return getattr(importlib.import_module(module), name)(p)
    return add


COMMANDS = {
    "plan": (cmd_plan, "the partition plan: ranks, shards, ops, collectives, memory, checks", add_plan_args),
    "run": (_lazy("helixlib.commands.run", "cmd_run"), "run the block on n x m processes; verify against dense; monitor",
            _lazy_args("helixlib.commands.run", "add_run_args")),
    "audit": (_lazy("helixlib.audit.claims", "cmd_audit"), "check a deployment plan's claims, one by one",
              _lazy_args("helixlib.audit.claims", "add_audit_args")),
    "dag": (_lazy("helixlib.dag.files", "cmd_dag"), "operator-level DAGs of the plan: checked, written as .dot, rendered",
            _lazy_args("helixlib.dag.files", "add_dag_args")),
    "estimate": (_lazy("helixlib.estimate.estimator", "cmd_estimate"),
                 "runtime and memory of the plan on a cluster (roofline + alpha-beta)",
                 _lazy_args("helixlib.estimate.estimator", "add_estimate_args")),
    "calibrate": (_lazy("helixlib.validation.calibrate", "cmd_calibrate"),
                  "measure this machine inside n x m concurrent ranks and write a cluster preset",
                  _lazy_args("helixlib.validation.calibrate", "add_calibrate_args")),
}


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m helixlib", description="Two-level attention partitioning workbook.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (fn, help_, add_args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.set_defaults(fn=fn)
    a = parser.parse_args(argv)
    try:
        return a.fn(a)
    except HelixInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
