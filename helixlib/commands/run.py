"""``python -m helixlib run``: the partitioned block on real processes, verified and monitored.

Started plainly it launches n·m local CPU ranks (``helixlib.runtime.launch.launch_local``);
started by ``torchrun`` (RANK/WORLD_SIZE in the environment) it is one rank of that job.
Every check that needs no torch runs before torch is imported (seconds on a busy machine).
"""

from __future__ import annotations

import argparse
import sys

from helixlib.commands.common import EXIT_CHECK_FAILED, EXIT_OK, add_plan_args, json_text, plan_from_args, print_json
from helixlib.core.errors import HelixInputError, bounded_number, one_of, positive_int
from helixlib.core.files import check_writable, write_text_atomic
from helixlib.core.presets import DEFAULT_RUN_MODEL
from helixlib.plan import Plan, StepPhase
from helixlib.runtime.spec import START_METHODS, TIMEOUT_RANGE_S, Fault, RunSpec, check_local_run
from helixlib.views import kv_report
from helixlib.views.reports import run_report


def add_args(p: argparse.ArgumentParser) -> None:
    add_plan_args(p, model=DEFAULT_RUN_MODEL)
    p.add_argument("--backward", action="store_true", help="also run backward and check every gradient")
    p.add_argument("--seed", default="0", help="weights/input seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda under torchrun when available), cpu or cuda")
    p.add_argument("--start-method", default="forkserver", help=f"local launcher: one of {', '.join(START_METHODS)}")
    p.add_argument("--collective-timeout", default="60", help="seconds before a collective counts as hung")
    p.add_argument("--timeout", default=None, help="seconds for the whole local run (default 120 + 3 x collective)")
    p.add_argument("--warmup", default="0", help="untimed steps (decode: loops) before the recorded one")
    p.add_argument("--steps", default="1", help="with --phase decode: tokens generated per sequence (default 1)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with the dense block")
    p.add_argument("--save", default=None, help="write the full result (with per-rank traces) as JSON here")
    p.add_argument("--inject-fault", default=None, metavar="RANK:COLLECTIVE:raise|hang|crash",
                   help="testing failure handling, e.g. 5:scores_allreduce:hang")


def _fault(text: str | None) -> Fault | None:
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 3:
        raise HelixInputError("inject_fault", "must be RANK:COLLECTIVE:raise|hang|crash", text)
    return Fault(positive_int("inject_fault", parts[0], minimum=0), parts[1], parts[2])


def _seconds(field: str, text: str) -> float:
    return bounded_number(field, text, *TIMEOUT_RANGE_S, "seconds")


def spec_from_args(a: argparse.Namespace) -> tuple[RunSpec, Plan]:
    plan = plan_from_args(a)
    steps = positive_int("steps", a.steps)
    if plan.phase == StepPhase.DECODE and a.backward:
        raise HelixInputError("backward", "decode steps run forward only (use --phase prefill)", True)
    if plan.phase != StepPhase.DECODE and steps != 1:
        raise HelixInputError("steps", "counts decode tokens: it needs --phase decode", steps)
    spec = RunSpec(plan.model, plan.partition, seed=positive_int("seed", a.seed, minimum=0),
                   backward=a.backward, verify=not a.no_verify, device=a.device,
                   collective_timeout_s=_seconds("collective_timeout", a.collective_timeout),
                   warmup=positive_int("warmup", a.warmup, minimum=0), fault=_fault(a.inject_fault),
                   phase=plan.phase, steps=steps)
    spec.check_fault(plan)
    return spec, plan


def run(a: argparse.Namespace) -> int:
    spec, plan = spec_from_args(a)
    one_of("start_method", a.start_method, START_METHODS)
    timeout = None if a.timeout is None else _seconds("timeout", a.timeout)
    if a.save:
        check_writable("save", a.save)  # before the run, not after it
    from helixlib.runtime.launch import DistributedRunError, launch_local, run_torchrun, torchrun_env

    in_torchrun = torchrun_env() is not None
    if not in_torchrun:
        check_local_run(spec, plan)
    try:
        if in_torchrun:
            result = run_torchrun(spec)
        else:
            log = None if a.json else (lambda msg: print(f"[launch] {msg}", file=sys.stderr, flush=True))
            result = launch_local(spec, a.start_method, timeout, log=log)
    except DistributedRunError as err:
        print(f"error: distributed run failed: {err}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    if result is None:  # a torchrun rank other than 0
        return EXIT_OK
    if a.save:
        write_text_atomic(a.save, json_text(result.to_dict()))
    if a.json:
        d = result.to_dict()
        d.pop("traces")  # in --save; keep stdout readable
        print_json(d)
    elif result.spec.partition.kv or result.spec.phase == StepPhase.DECODE:
        text = run_report(result).split("\n", 1)[1]  # its first line describes the head-dim split
        extra = kv_report.decode_lines(result) if result.spec.phase == StepPhase.DECODE else []
        print("\n".join([kv_report.run_headline(result), *extra, text]))
    else:
        print(run_report(result))
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED
