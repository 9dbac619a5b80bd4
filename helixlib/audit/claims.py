"""Auditing a deployment plan claim by claim: ``python -m helixlib audit``.

A claims file (YAML, format in ``docs/audit_claims.md``; the shipped one is
``data/plan_claims.yaml``) lists each claim of a plan with its quote, the plan's value,
the named helixlib computation that checks it (``check`` + ``args``, see
``helixlib.audit.checks``) and how to compare (``compare``). The audit computes every
value and gives a verdict:

* ``holds`` — the computation agrees with the claim;
* ``wrong`` — it does not (with the ratio computed / claimed when both are numbers);
* ``unverifiable as stated`` — a qualitative claim; the computed value is shown for context.

Nothing here knows a verdict in advance: change the claims file, or the model it names,
and the verdicts follow the computations.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helixlib.core.errors import HelixInputError, one_of
from helixlib.core.presets import DATA_DIR
from helixlib.core.units import table

CLAIMS_FILE = DATA_DIR / "plan_claims.yaml"
COMPARES = ("equal", "at_most", "at_least", "true", "qualitative")
VERDICTS = ("holds", "wrong", "unverifiable as stated")
_CLAIM_FIELDS = ("id", "section", "quote", "claimed", "check", "args", "compare", "tolerance", "explain")


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    quote: str
    check: str
    compare: str = "equal"
    claimed: object = None
    args: dict = field(default_factory=dict)
    tolerance: float = 0.01  # relative, for compare=equal on numbers
    explain: str = ""  # why the claim fails (or, for qualitative claims, why it cannot be checked)


@dataclass(frozen=True)
class Computed:
    """What a check computed: the value, a one-line account of it, and (for checks that
    decide themselves, like structural checks) a boolean verdict."""

    value: object
    detail: str


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    computed: object
    verdict: str
    ratio: float | None
    explanation: str

    def to_dict(self) -> dict:
        c = self.claim
        return {"id": c.id, "section": c.section, "quote": c.quote, "claimed": _plain(c.claimed),
                "computed": _plain(self.computed), "verdict": self.verdict, "ratio": self.ratio,
                "explanation": self.explanation, "check": c.check, "args": c.args}


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if hasattr(v, "item"):
        return v.item()
    return v


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def judge(claim: Claim, got: Computed) -> Verdict:
    """Compare the computed value with the claim according to ``claim.compare``."""
    value, claimed = got.value, claim.claimed
    ratio = value / claimed if _number(value) and _number(claimed) and claimed != 0 else None
    if claim.compare == "qualitative":
        return Verdict(claim, value, "unverifiable as stated", ratio,
                       f"{claim.explain}; computed: {got.detail}" if claim.explain else f"computed: {got.detail}")
    if claim.compare == "true":
        ok = bool(value)
    elif claim.compare == "equal":
        if _number(value) and _number(claimed):
            ok = math.isclose(value, claimed, rel_tol=claim.tolerance)
        else:
            ok = _plain(value) == _plain(claimed)
    elif claim.compare == "at_most":
        ok = value <= claimed
    else:  # at_least
        ok = value >= claimed
    if ok:
        return Verdict(claim, value, "holds", ratio, got.detail)
    why = f"; {claim.explain}" if claim.explain else ""
    return Verdict(claim, value, "wrong", ratio, f"{got.detail}{why}")


@dataclass
class ClaimsFile:
    context: dict
    claims: list[Claim]
    path: Path


def load_claims(path: str | Path | None = None) -> ClaimsFile:
    """Read and validate a claims file (one-line errors naming the claim and field)."""
    from helixlib.audit.checks import CHECKS

    path = Path(path) if path else CLAIMS_FILE
    if not path.exists():
        raise HelixInputError("claims", "file does not exist", str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise HelixInputError("claims", f"is not valid YAML ({str(exc).splitlines()[0]})", str(path)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list):
        raise HelixInputError("claims", "must be a mapping with a 'claims' list", str(path))
    context = raw.get("context") or {}
    if not isinstance(context, dict):
        raise HelixInputError("context", "must be a mapping", context)
    claims, seen = [], set()
    for i, c in enumerate(raw["claims"]):
        where = f"claims[{i}]" + (f" ({c.get('id')})" if isinstance(c, dict) and c.get("id") else "")
        if not isinstance(c, dict):
            raise HelixInputError(where, "must be a mapping", c)
        unknown = sorted(set(c) - set(_CLAIM_FIELDS))
        if unknown:
            raise HelixInputError(f"{where}.{unknown[0]}", f"is not a claim field (known: {', '.join(_CLAIM_FIELDS)})")
        for req in ("id", "section", "quote", "check"):
            if not c.get(req):
                raise HelixInputError(f"{where}.{req}", "is required")
        if c["id"] in seen:
            raise HelixInputError(f"{where}.id", "must be unique", c["id"])
        seen.add(c["id"])
        if c["check"] not in CHECKS:
            raise HelixInputError(f"{where}.check", f"is not a known check (known: {', '.join(sorted(CHECKS))})",
                                  c["check"])
        compare = one_of(f"{where}.compare", c.get("compare", "equal"), COMPARES)
        if compare in ("equal", "at_most", "at_least") and "claimed" not in c:
            raise HelixInputError(f"{where}.claimed", f"is required for compare={compare}")
        if compare in ("at_most", "at_least") and not _number(c["claimed"]):
            raise HelixInputError(f"{where}.claimed", f"must be a number for compare={compare}", c["claimed"])
        args = c.get("args") or {}
        if not isinstance(args, dict):
            raise HelixInputError(f"{where}.args", "must be a mapping", args)
        claimed = c.get("claimed", True if compare == "true" else None)
        claims.append(Claim(c["id"], str(c["section"]), str(c["quote"]).strip(), c["check"], compare, claimed, args, float(c.get("tolerance", 0.01)), str(c.get("explain", "")).strip()))
    return ClaimsFile(context, claims, path)


def audit(claims: ClaimsFile, only: str | None = None, progress=None) -> list[Verdict]:
    """Evaluate every claim (or those whose id starts with ``only``)."""
    from helixlib.audit.checks import CHECKS, AuditContext

    ctx = AuditContext(claims.context)
    out = []
    for c in claims.claims:
        if only and not c.id.startswith(only):
            continue
        if progress:
            progress(c)
        try:
            got = CHECKS[c.check](ctx, **c.args)
        except TypeError as exc:
            raise HelixInputError(f"{c.id}.args", f"do not fit check {c.check} ({exc})", c.args) from None
        out.append(judge(c, got))
    return out


def summary(verdicts: list[Verdict]) -> dict[str, int]:
    return {v: sum(x.verdict == v for x in verdicts) for v in VERDICTS}


def _fmt(v) -> str:
    if _number(v):
        return f"{v:.4g}"
    text = json.dumps(_plain(v)) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def report(verdicts: list[Verdict]) -> str:
    rows = [[v.claim.id, v.verdict, _fmt(v.claim.claimed), _fmt(v.computed),
             "" if v.ratio is None else f"{v.ratio:.3g}"] for v in verdicts]
    lines = [table(rows, ["claim", "verdict", "claimed", "computed", "ratio"]), ""]
    for v in verdicts:
        if v.verdict != "holds":
            lines.append(f"- {v.claim.id} [{v.verdict}]: {v.explanation}")
    s = summary(verdicts)
    lines.append(f"\n{len(verdicts)} claims: " + ", ".join(f"{n} {k}" for k, n in s.items()))
    return "\n".join(lines)


def add_audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--claims", default=None, help=f"claims file (default {CLAIMS_FILE.relative_to(DATA_DIR.parent)})")
    p.add_argument("--only", default=None, help="audit only the claims whose id starts with this")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_audit(a: argparse.Namespace) -> int:
    claims = load_claims(a.claims)
    log = None if a.json else (lambda c: print(f"[audit] {c.id}", file=sys.stderr, flush=True))
    verdicts = audit(claims, a.only, log)
    if a.json:
        print(json.dumps({"claims_file": str(claims.path), "context": claims.context,
                          "summary": summary(verdicts), "verdicts": [v.to_dict() for v in verdicts]}))
    else:
        print(report(verdicts))
    return 0
