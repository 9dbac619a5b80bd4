"""Time of one rank's Program: per-op roofline, per-collective α–β, and three totals.

Conventions:

* backward = 2 × forward for a matmul (its input-gradient and weight-gradient GEMMs have
  its FLOPs, and the device's GEMM curve is symmetric in M, K, N); an element-wise op moves
  the bytes it declares for its backward (``OpCost.backward_bytes``) or else takes twice
  its forward time; a flash-attention kernel runs 2.5 × its forward FLOPs (five GEMMs to
  the forward's two, recomputing the scores) at the device's backward flash fraction;
* a training step of one block = forward + backward (+ under full recompute the forward
  again, with its collectives; under selective recompute the attention core's ops again);
* totals, for the slowest rank:
    - ``no_overlap``  = compute + every collective (an upper bound),
    - ``perfect_overlap`` = max(compute, communication) (a lower bound),
    - ``dataflow`` = compute + blocking collectives + what an overlappable collective
      cannot hide behind its window (see ``helixlib.estimate.workload.Overlap``); this is the
      estimate we rank configurations by. Collectives share the compute they hide behind: in
      each run (forward, recompute, backward) the hidden time of all windows together is at
      most the time of the ops those windows cover, so ``no_overlap ≥ dataflow ≥
      perfect_overlap ≥ max(compute, communication)`` always holds.

``training`` may be a 0/1 array and ``recompute`` a 0/1 array (1: full) or one of
``none | selective | full`` (the sweep evaluates many configurations at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.estimate.alphabeta import CommTime, collective_time
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.roofline import OpTime, elementwise_time, flash_time, matmul_time
from helixlib.estimate.workload import CommCost, OpCost, Program
from helixlib.plan.names import Recompute

BACKWARD_FACTOR = {"flash_attention": 2.5}
DEFAULT_BACKWARD_FACTOR = 2.0


def op_time(op: OpCost, cluster: Cluster, dtype: str) -> OpTime:
    dev = cluster.device
    if op.kind == "matmul":
        batch, M, K, N = op.gemm
        return matmul_time(dev, dtype, op.flops, op.bytes, M, K, N, batch)
    if op.kind == "flash_attention":
        return flash_time(dev, dtype, op.flops, op.bytes, op.causal)
    return elementwise_time(dev, dtype, op.flops, op.bytes, op.kind)


def backward_time(op: OpCost, forward: OpTime, cluster: Cluster, dtype: str):
    """One backward of ``op`` (see the module docstring)."""
    if op.kind == "flash_attention" and cluster.device.flash_backward_efficiency is not None:
        return flash_time(cluster.device, dtype, BACKWARD_FACTOR["flash_attention"] * np.asarray(op.flops, dtype=float),
                          2 * np.asarray(op.bytes, dtype=float), op.causal, backward=True).time_s
    if op.backward_bytes is not None:
        return elementwise_time(cluster.device, dtype, 2 * np.asarray(op.flops, dtype=float), op.backward_bytes,
                                op.kind).time_s
    return BACKWARD_FACTOR.get(op.kind, DEFAULT_BACKWARD_FACTOR) * forward.time_s


def recompute_weights(recompute) -> tuple:
    """(full, selective) as 0/1 (arrays allowed) from a bool, a 0/1 array or a ``Recompute`` name."""
    if isinstance(recompute, str):
        mode = Recompute(recompute)
        return float(mode == Recompute.FULL), float(mode == Recompute.SELECTIVE)
    return np.asarray(recompute, dtype=float), 0.0


@dataclass
class OpRow:
    op: OpCost
    forward: OpTime
    backward_s: object  # one backward (0 when not training)


@dataclass
class CommRow:
    comm: CommCost
    run: str  # forward | backward | recompute (the forward's collectives again, in backward)
    times: CommTime  # one call set, whether it runs or not
    weight: object  # 1 if it runs, 0 if not (arrays in a sweep)
    exposed_s: object  # the part on the critical path (dataflow estimate)

    @property
    def time_s(self):
        return self.times.time_s * self.weight


@dataclass
class Timing:
    ops: list[OpRow]
    comms: list[CommRow]
    compute_s: object  # all op time of the step
    communication_s: object  # all collective time
    exposed_s: object  # collective time on the critical path (dataflow)

    @property
    def forward_s(self):
        """The forward's part of the dataflow time: its ops and its exposed collectives."""
        return sum(r.forward.time_s for r in self.ops) + sum(r.exposed_s for r in self.comms if r.run == "forward")

    @property
    def backward_s(self):
        """The rest of the dataflow time: backward, with any recomputation."""
        return self.dataflow_s - self.forward_s

    @property
    def no_overlap_s(self):
        return self.compute_s + self.communication_s

    @property
    def perfect_overlap_s(self):
        return np.maximum(self.compute_s, self.communication_s)

    @property
    def dataflow_s(self):
        return self.compute_s + self.exposed_s

    def totals(self) -> dict:
        return {"no_overlap": self.no_overlap_s, "dataflow": self.dataflow_s, "perfect_overlap": self.perfect_overlap_s}


def program_timing(prog: Program, cluster: Cluster, dtype: str, training=False, recompute=False) -> Timing:
    training = np.asarray(training, dtype=float)
    full, selective = recompute_weights(recompute)
    redo, redo_sel = training * full, training * selective
    rows = []
    for op in prog.ops:
        t = op_time(op, cluster, dtype)
        rows.append(OpRow(op, t, training * backward_time(op, t, cluster, dtype)))
    again = {r.op.name: (redo + (redo_sel if r.op.selective else 0.0)) * r.forward.time_s for r in rows}
    compute = sum(r.forward.time_s for r in rows) + sum(again.values()) + sum(r.backward_s for r in rows)
    phase_ops = {"forward": {r.op.name: r.forward.time_s for r in rows}, "recompute": again,
                 "backward": {r.op.name: r.backward_s for r in rows}}

    comms = [CommRow(c, "forward", _comm_time(c, cluster), 1.0, 0.0) for c in prog.forward_comms]
    comms += [CommRow(c, "backward", _comm_time(c, cluster), training, 0.0) for c in prog.backward_comms]
    comms += [CommRow(c, "recompute", _comm_time(c, cluster), redo, 0.0) for c in prog.forward_comms]
    windows: dict[tuple, list[CommRow]] = {}
    for row in comms:
        if row.comm.overlap is None:
            row.exposed_s = row.time_s
        else:
            ov = row.comm.overlap
            run = row.run if ov.phase == "forward" else ov.phase
            windows.setdefault((run, ov.ops, ov.fraction), []).append(row)
    hidden = {}
    for key, members in windows.items():
        run, names, fraction = key
        budget = fraction * sum(t for n, t in phase_ops[run].items() if names == ("*",) or n in names)
        hidden[key] = np.minimum(sum(r.time_s for r in members), budget)
    for run in {key[0] for key in windows}:  # windows of one run share the compute they hide behind
        keys = [key for key in windows if key[0] == run]
        union = sum(t * max((f for _, names, f in keys if names == ("*",) or n in names), default=0.0)
                    for n, t in phase_ops[run].items())
        total = sum(hidden[key] for key in keys)
        scale = np.where(total > union, union / np.where(total > 0, total, 1.0), 1.0)
        for key in keys:
            hidden[key] = hidden[key] * scale
    for key, members in windows.items():
        total = sum(r.time_s for r in members)
        share = 1.0 - hidden[key] / np.where(total > 0, total, 1.0)
        for r in members:
            r.exposed_s = r.time_s * share
    return Timing(rows, comms, compute, sum(r.time_s for r in comms), sum(r.exposed_s for r in comms))


def _comm_time(c: CommCost, cluster: Cluster) -> CommTime:
    return collective_time(cluster, c.kind, c.bytes, c.p, c.nodes, c.count)
