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

import math
from dataclasses import dataclass, field
from pathlib import Path

import helixlib.audit.checks_cost  # noqa: F401 - registers the estimator, DAG and script checks
import helixlib.audit.checks_kv  # noqa: F401 - registers the comparison with KV-shard partitions
import helixlib.audit.checks_plan  # noqa: F401 - registers the plan and run checks
from helixlib.audit.context import AuditContext
from helixlib.audit.registry import CHECKS, Computed, bind, call
from helixlib.core.errors import HelixInputError, one_of
from helixlib.core.presets import DATA_DIR, read_yaml

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
class Verdict:
    claim: Claim
    computed: object
    verdict: str
    ratio: float | None
    explanation: str

    def to_dict(self) -> dict:
        c = self.claim
        return {"id": c.id, "section": c.section, "quote": c.quote, "claimed": plain(c.claimed),
                "computed": plain(self.computed), "verdict": self.verdict, "ratio": self.ratio,
                "explanation": self.explanation, "check": c.check, "args": c.args}


def plain(v):
    """``v`` with tuples as lists and numpy scalars as Python numbers (JSON-able)."""
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
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
            ok = plain(value) == plain(claimed)
    elif claim.compare == "at_most":
        ok = value <= claimed
    else:  # at_least
        ok = value >= claimed
    if ok:
        return Verdict(claim, value, "holds", ratio, got.detail)
    why = f"; {claim.explain}" if claim.explain else ""
    return Verdict(claim, value, "wrong", ratio, f"{got.detail}{why}")


@dataclass(frozen=True)
class ClaimsFile:
    context: dict
    claims: list[Claim]
    path: Path


def _text(where: str, value) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        raise HelixInputError(where, "must be a non-empty string", value)
    return str(value).strip()


def _tolerance(where: str, value) -> float:
    if not _number(value) or not 0 <= value < 1 or math.isnan(value):
        raise HelixInputError(where, "must be a relative tolerance, a number in [0, 1)", value)
    return float(value)


def _claim(where: str, c) -> Claim:
    if not isinstance(c, dict):
        raise HelixInputError(where, "must be a mapping", c)
    unknown = sorted(str(k) for k in set(c) - set(_CLAIM_FIELDS))
    if unknown:
        raise HelixInputError(f"{where}.{unknown[0]}", f"is not a claim field (known: {', '.join(_CLAIM_FIELDS)})")
    for req in ("id", "section", "quote", "check"):
        if c.get(req) in (None, ""):
            raise HelixInputError(f"{where}.{req}", "is required")
    cid, check = _text(f"{where}.id", c["id"]), _text(f"{where}.check", c["check"])
    if check not in CHECKS:
        raise HelixInputError(f"{where}.check", f"is not a known check (known: {', '.join(sorted(CHECKS))})", check)
    compare = one_of(f"{where}.compare", c.get("compare", "equal"), COMPARES)
    if compare in ("equal", "at_most", "at_least") and "claimed" not in c:
        raise HelixInputError(f"{where}.claimed", f"is required for compare={compare}")
    if compare in ("at_most", "at_least") and not _number(c["claimed"]):
        raise HelixInputError(f"{where}.claimed", f"must be a number for compare={compare}", c["claimed"])
    args = c.get("args") or {}
    if not isinstance(args, dict):
        raise HelixInputError(f"{where}.args", "must be a mapping", args)
    bind(where, check, args)  # the arguments must fit the check's signature
    claimed = c.get("claimed", True if compare == "true" else None)
    return Claim(cid, _text(f"{where}.section", c["section"]), _text(f"{where}.quote", c["quote"]), check,
                 compare, claimed, args, _tolerance(f"{where}.tolerance", c.get("tolerance", 0.01)),
                 str(c.get("explain", "")).strip())


def load_claims(path: str | Path | None = None) -> ClaimsFile:
    """Read and validate a claims file (one-line errors naming the claim and field)."""
    path = Path(path) if path else CLAIMS_FILE
    raw = read_yaml("claims", path)
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list):
        raise HelixInputError("claims", "must be a mapping with a 'claims' list", str(path))
    if not raw["claims"]:
        raise HelixInputError("claims", "lists no claims", str(path))
    context = raw.get("context") or {}
    if not isinstance(context, dict):
        raise HelixInputError("context", "must be a mapping", context)
    claims, seen = [], set()
    for i, c in enumerate(raw["claims"]):
        where = f"claims[{i}]" + (f" ({c.get('id')})" if isinstance(c, dict) and isinstance(c.get("id"), str) else "")
        claim = _claim(where, c)
        if claim.id in seen:
            raise HelixInputError(f"{where}.id", "must be unique", claim.id)
        seen.add(claim.id)
        claims.append(claim)
    return ClaimsFile(context, claims, path)


def audit(claims: ClaimsFile, only: str | None = None, progress=None) -> list[Verdict]:
    """Evaluate every claim (or those whose id starts with ``only``; selecting none is an error)."""
    chosen = [c for c in claims.claims if not only or c.id.startswith(only)]
    if not chosen:
        raise HelixInputError("only", f"selects no claim (ids start with: "
                                      f"{', '.join(sorted({c.id.split('.')[0] + '.' for c in claims.claims}))})", only)
    ctx = AuditContext(claims.context)
    out = []
    for c in chosen:
        if progress:
            progress(c)
        out.append(judge(c, call(ctx, c.check, bind(c.id, c.check, c.args))))
    return out


def summary(verdicts: list[Verdict]) -> dict[str, int]:
    return {v: sum(x.verdict == v for x in verdicts) for v in VERDICTS}
