"""The audit: every claim of a deployment plan, computed by helixlib and judged.

``claims`` reads a claims file and judges each claim; ``registry`` holds the named checks a
claim may call (``checks_plan``: the Plan, its checks and real runs; ``checks_cost``: the
estimator, the design space, the DAG and the plan's script); ``context`` is the deployment
under audit with the results the checks share.
"""

from helixlib.audit.checks_cost import deployment_summary
from helixlib.audit.claims import CLAIMS_FILE, Claim, ClaimsFile, Verdict, audit, judge, load_claims, summary
from helixlib.audit.context import AuditContext
from helixlib.audit.registry import CHECKS, Computed

__all__ = ["CHECKS", "CLAIMS_FILE", "AuditContext", "Claim", "ClaimsFile", "Computed", "Verdict", "audit",
           "deployment_summary", "judge", "load_claims", "summary"]
