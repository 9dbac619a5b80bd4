"""``python -m helixlib dag``: the deployment plan's three DAG files, checked, written and
rendered (:mod:`helixlib.dag.files`), with the checks printed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helixlib.commands.common import EXIT_CHECK_FAILED, EXIT_OK, add_plan_args, plan_from_args, print_json
from helixlib.core.errors import HelixInputError
from helixlib.core.files import check_writable
from helixlib.dag.files import FORMATS, write_dag_files


def add_args(p: argparse.ArgumentParser) -> None:
    add_plan_args(p)
    p.add_argument("--out", default="build/dag", help="output folder (default build/dag)")
    p.add_argument("--formats", default="svg,png", help=f"rendered formats, comma-separated, of {', '.join(FORMATS)}")
    p.add_argument("--compact", action="store_true",
                   help="draw one rank operator by operator, every other rank one node per stage")
    p.add_argument("--rank", default="0", help="the rank drawn in full with --compact (default 0)")


def _parse_formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip() for f in text.split(",") if f.strip())
    if any(f not in FORMATS for f in fmts):
        raise HelixInputError("formats", f"must be a comma-separated list of {', '.join(FORMATS)}", text)
    return fmts


def _parse_rank(text: str, world_size: int) -> int:
    try:
        rank = int(text)
    except ValueError:
        rank = -1
    if not 0 <= rank < world_size:
        raise HelixInputError("rank", f"must be an integer in 0..{world_size - 1}", text)
    return rank


def run(a: argparse.Namespace) -> int:
    plan = plan_from_args(a)
    formats, rank = _parse_formats(a.formats), _parse_rank(a.rank, plan.world_size)
    check_writable("out", a.out, folder=True)
    files, missing_dot = write_dag_files(plan, a.out, formats, a.compact, rank)
    if a.json:
        print_json({"files": [{"name": f.name, "nodes": len(f.graph.nodes), "edges": len(f.graph.edges),
                               "drawn_nodes": len(f.view.nodes), "written": [str(p) for p in f.written],
                               "checks": [c.to_dict() for c in f.checks]} for f in files]})
    else:
        for f in files:
            print(f"{f.name}: {len(f.graph.nodes)} nodes, {len(f.graph.edges)} edges "
                  f"(drawn: {len(f.view.nodes)} nodes) -> {', '.join(p.name for p in f.written)}")
            for c in f.checks:
                print(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        print(f"written to {Path(a.out)}")
        if plan.world_size > 16 and not a.compact:
            print("hint: --compact draws one rank operator by operator and the others one node per stage")
    if missing_dot:
        print(missing_dot, file=sys.stderr)
    return EXIT_OK if all(f.ok for f in files) else EXIT_CHECK_FAILED
