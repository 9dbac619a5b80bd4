"""The single-process simulation: every rank of the Plan runs the real partitioned
block (``helixlib.runtime.layer``) in its own thread of one process; collectives are
emulated by sums and concatenations (``ThreadCommunicator``). Compared with the
dense block, it proves the partition's maths before any process is launched.
"""

from __future__ import annotations

import threading

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.plan import Plan
from helixlib.plan.model import RUNTIME_DTYPES
from helixlib.runtime.communicator import Rendezvous, ThreadCommunicator
from helixlib.runtime.trace import Trace
from helixlib.runtime.verify import Comparison, RankOutput, compare, dense_reference, run_rank


def simulate_ranks(plan: Plan, dtype: str = "fp64", seed: int = 0, backward: bool = False,
                   timeout: float = 120.0, traces: list[Trace] | None = None,
                   around_step=None) -> tuple[list[RankOutput], list[Trace]]:
    """Run all ranks as threads; return their outputs and traces (rank order).
    The first failure in any rank is re-raised; the others stop at their next collective.
    ``traces`` (one per rank) replace the default ones; ``around_step(rank, run)``, if
    given, is called in the rank's thread and must call ``run()`` and return its result."""
    if not isinstance(plan, Plan):
        raise HelixInputError("plan", "must be a Plan (build_plan gives one)", type(plan).__name__)
    one_of("dtype", dtype, RUNTIME_DTYPES)
    positive_int("seed", seed, minimum=0)
    traces = traces if traces is not None else [Trace(r) for r in range(plan.world_size)]

    def body(r: int, comm: ThreadCommunicator):
        run = lambda: run_rank(plan, r, comm, dtype, seed, backward)
        return around_step(r, run) if around_step else run()

    return run_threads(plan, traces, body, timeout), traces


def run_threads(plan: Plan, traces: list[Trace], body, timeout: float = 120.0) -> list:
    """``body(rank, communicator)`` for every rank of ``plan``, each in its own thread with a
    ``ThreadCommunicator`` recording into ``traces[rank]``; their results in rank order. The first
    failure in any rank is re-raised; the others stop at their next collective."""
    G = plan.world_size
    rv = Rendezvous(timeout)
    outputs: list = [None] * G
    errors: list[BaseException] = []

    def worker(r: int):
        try:
            outputs[r] = body(r, ThreadCommunicator(r, plan.partition, rv, traces[r]))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
            rv.fail(exc)

    threads = [threading.Thread(target=worker, args=(r,), name=f"rank{r}", daemon=True) for r in range(G)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise next((e for e in errors if type(e).__name__ != "PeerFailed"), errors[0])
    return outputs


def simulate(plan: Plan, dtype: str = "fp64", seed: int = 0, backward: bool = False) -> Comparison:
    """Run the plan in one process and compare every rank with the dense fp64 block."""
    outputs, _ = simulate_ranks(plan, dtype, seed, backward)
    ref = dense_reference(plan, seed, backward)
    dense_dtype = None if dtype == "fp64" else dense_reference(plan, seed, False, dtype)
    return compare(plan, outputs, ref, dtype, dense_dtype)
