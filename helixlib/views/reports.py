"""The text the commands print: a plan, an estimate, a distributed run and an audit, each as a
few lines and plain tables. Notebooks call the same functions."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING

from helixlib.core.units import seconds, si, table
from helixlib.plan import Plan
from helixlib.views import tables

if TYPE_CHECKING:  # the plan command needs neither torch nor the estimator
    from helixlib.audit.claims import Verdict
    from helixlib.estimate.estimator import Estimate
    from helixlib.runtime.run import RunResult


def plan_report(plan: Plan, checks) -> str:
    """The plan as text: model and partition, one row per rank, the collectives, the checks."""
    lines = []
    m, p = plan.model, plan.partition
    lines.append(f"{m.name}: D={m.hidden} H={m.heads} d={m.head_dim} F={m.mlp_hidden} L={m.seq_len} "
                 f"B={m.batch} {m.dtype}")
    lines.append(f"partition: n={p.head_groups} head groups x m={p.dim_segments} dim segments = "
                 f"{plan.world_size} ranks; qk_mode={p.qk_mode}, output={p.output}\n")
    lines.append(table(tables.rank_rows(plan), tables.RANK_HEADER) + "\n")
    lines.append(table(tables.collective_rows(plan), tables.COLLECTIVE_HEADER) + "\n")
    lines += [f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks]
    return "\n".join(lines)


def estimate_report(est: Estimate) -> str:
    """The estimate as text tables: ops, collectives, totals, memory."""
    from helixlib.estimate.memory import MemoryBreakdown

    m, part, c = est.plan.model, est.plan.partition, est.cluster
    o = est.options
    mode = (("training" if o.training else "forward") + (" +flash" if o.flash else "")
            + (" +recompute" if o.recompute else ""))
    lines = [f"{m.name} {part.head_groups}x{part.dim_segments} {part.qk_mode} on {c.name} ({c.device.name}, "
             f"{c.gpus_per_node} GPUs/node): {mode}, micro-batch {est.micro_batch} x {est.micro_steps}; "
             f"rank {est.rank} shown", ""]
    ops = [[r["name"], r["kind"], si(r["flops"], "FLOP"), si(r["bytes"], "B"), r["bound"],
            f"{r['efficiency']:.2f}" if r["kind"] in ("matmul", "flash_attention") else "-",
            seconds(r["forward_s"]), seconds(r["backward_s"]) if o.training else "-"] for r in est.op_rows()]
    lines += [table(ops, ["op", "kind", "FLOPs", "bytes", "bound", "eff", "forward", "backward"]), ""]
    comms = [[r["name"], r["kind"], r["run"], f"{r['group_size']}@{r['nodes']}n", si(r["bytes"], "B"), r["count"],
              seconds(r["time_s"]), seconds(r["exposed_s"])] for r in est.collective_rows()]
    lines += [table(comms, ["collective", "kind", "run", "ranks", "size", "calls", "time", "exposed"]), ""]
    pl, pm = est.per_layer, est.per_model
    rows = [[k.replace("_", " "), seconds(pl[k]), seconds(pm[k])] for k in pl]
    lines += [table(rows, ["per step", "one layer", f"{m.layers} layers"]), ""]
    mfu, share = est.mfu, est.communication_share
    lines.append(f"MFU (dataflow): {mfu['dataflow']:.1%}   communication: {share['all_of_no_overlap_time']:.1%} of the "
                 f"no-overlap time, {share['communication_over_compute']:.1%} of compute")
    mem = est.memory
    mrows = [[t, si(float(getattr(mem, t)), "B")] for t in MemoryBreakdown.TERMS]
    mrows += [["total", si(float(mem.total), "B")], ["capacity", si(mem.capacity, "B")]]
    lines += ["", table(mrows, ["memory per GPU", "bytes"]),
              f"verdict: {'fits' if mem.fits else 'does NOT fit'}; largest micro-batch that fits: "
              f"{est.largest_micro_batch if est.largest_micro_batch else 'none (even 1 sequence does not fit)'}"]
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)


def run_report(r: RunResult) -> str:
    """The run in a few lines and two tables: errors, collectives vs plan, timings, memory."""
    s, part = r.spec, r.spec.partition
    lines = [f"{s.model.name} {part.label} {part.qk_mode}/{part.output} {s.model.dtype}: {r.world_size} ranks, "
             f"{r.backend} on {r.device}, {'forward+backward' if s.backward else 'forward'}"]
    c = r.comparison
    if c is not None:
        bwd = f", backward {c.backward_error:.2e}" if c.backward_errors else ""
        tol = f"{c.tolerance[0]:g}" + (f" / {c.tolerance[1]:g}" if c.backward_errors else "")
        lines.append(f"max error vs dense (relative): forward {c.forward_error:.2e}{bwd}; tolerance {tol}"
                     f" -> {'ok' if c.ok else 'FAIL'}")
    lines.append(f"collectives_match: {str(r.collectives_match).lower()}"
                 + ("" if r.collectives_match else "\n  " + "\n  ".join(r.mismatches[:4])))
    t = r.traces
    fwd = max(tr.timings.get("forward_s", 0) for tr in t)
    bwd = max(tr.timings.get("backward_s", 0) for tr in t)
    lines.append(f"start-up {r.timings.get('startup_s', 0):.2f} s, wall {r.timings.get('wall_s', 0):.2f} s; "
                 f"slowest rank: forward {fwd * 1e3:.1f} ms" + (f", backward {bwd * 1e3:.1f} ms" if bwd else ""))
    rows = [[name, f"{statistics.median(v) * 1e3:.3f}", f"{max(v) * 1e3:.3f}"] for name, v in r.op_seconds().items()]
    lines += ["", table(rows, ["op (forward)", "median ms", "max ms"]), ""]
    rows = [[c["name"], c["phase"], c["kind"], c["calls"], si(c["bytes"], "B"),
             f"{statistics.median(c['seconds']) * 1e3:.3f}"] for c in r.collective_summary()]
    lines += [table(rows, ["collective", "phase", "kind", "calls", "bytes (all calls)", "median ms"]), ""]
    lines.append(f"peak memory per rank ({r.memory_kind}): "
                 f"min {si(min(r.peak_memory_bytes), 'B')}, max {si(max(r.peak_memory_bytes), 'B')}")
    return "\n".join(lines)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v) -> str:
    from helixlib.audit.claims import plain

    if _number(v):
        return f"{v:.4g}"
    text = json.dumps(plain(v)) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def audit_report(verdicts: list[Verdict]) -> str:
    """The verdicts as a table, then an explanation of every claim that does not hold."""
    from helixlib.audit.claims import summary

    rows = [[v.claim.id, v.verdict, _fmt(v.claim.claimed), _fmt(v.computed),
             "" if v.ratio is None else f"{v.ratio:.3g}"] for v in verdicts]
    lines = [table(rows, ["claim", "verdict", "claimed", "computed", "ratio"]), ""]
    for v in verdicts:
        if v.verdict != "holds":
            lines.append(f"- {v.claim.id} [{v.verdict}]: {v.explanation}")
    s = summary(verdicts)
    lines.append(f"\n{len(verdicts)} claims: " + ", ".join(f"{n} {k}" for k, n in s.items()))
    return "\n".join(lines)
