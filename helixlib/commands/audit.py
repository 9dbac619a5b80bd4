"""``python -m helixlib audit``: every claim of a deployment plan, computed and judged
(:mod:`helixlib.audit`), as a table or one JSON object."""

from __future__ import annotations

import argparse
import sys

from helixlib.audit.claims import CLAIMS_FILE, audit, load_claims, summary
from helixlib.commands.common import EXIT_OK, print_json
from helixlib.views.reports import audit_report


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--claims", default=None, help=f"claims file (default: the shipped {CLAIMS_FILE.name})")
    p.add_argument("--only", default=None, help="audit only the claims whose id starts with this")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(a: argparse.Namespace) -> int:
    claims = load_claims(a.claims)
    # progress on a terminal only: piped, stderr carries nothing but errors
    log = (lambda c: print(f"[audit] {c.id}", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    verdicts = audit(claims, a.only, log)
    if a.json:
        print_json({"claims_file": str(claims.path), "context": claims.context,
                    "summary": summary(verdicts), "verdicts": [v.to_dict() for v in verdicts]})
    else:
        print(audit_report(verdicts))
    return EXIT_OK
