"""Time of one rank's Program: per-op roofline, per-collective α–β, and three totals.

Conventions:

* backward = 2 × forward for every op (a matmul's input-gradient and weight-gradient
  GEMMs have its shape; an element-wise op reads and writes about twice as much),
  except a flash-attention kernel: 2.5 × (its backward runs five GEMMs to the
  forward's two, recomputing the scores);
* a training step of one block = forward + backward (+ the forward again, with its
  collectives, under full recompute);
* totals, for the slowest rank:
    - ``no_overlap``  = compute + every collective (an upper bound),
    - ``perfect_overlap`` = max(compute, communication) (a lower bound),
    - ``dataflow`` = compute + blocking collectives + what an overlappable collective
      cannot hide behind its window (see ``helixlib.estimate.workload.Overlap``); this is the
      estimate we rank configurations by.

``training`` and ``recompute`` may be 0/1 arrays (the sweep evaluates many at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helixlib.estimate.alphabeta import CommTime, collective_time
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.roofline import OpTime, elementwise_time, flash_time, matmul_time
from helixlib.estimate.workload import CommCost, OpCost, Program

BACKWARD_FACTOR = {"flash_attention": 2.5}
DEFAULT_BACKWARD_FACTOR = 2.0


def op_time(op: OpCost, cluster: Cluster, dtype: str) -> OpTime:
    dev = cluster.device
    if op.kind == "matmul":
        _, M, K, N = op.gemm
        return matmul_time(dev, dtype, op.flops, op.bytes, M, K, N)
    if op.kind == "flash_attention":
        return flash_time(dev, dtype, op.flops, op.bytes)
    return elementwise_time(dev, dtype, op.flops, op.bytes, op.kind)


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
    redo = training * np.asarray(recompute, dtype=float)
    rows = []
    for op in prog.ops:
        t = op_time(op, cluster, dtype)
        rows.append(OpRow(op, t, training * BACKWARD_FACTOR.get(op.kind, DEFAULT_BACKWARD_FACTOR) * t.time_s))
    fwd = sum(r.forward.time_s for r in rows)
    compute = fwd * (1 + redo) + sum(r.backward_s for r in rows)
    phase_ops = {"forward": {r.op.name: r.forward.time_s for r in rows},
                 "recompute": {r.op.name: redo * r.forward.time_s for r in rows},
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
    for (run, names, fraction), members in windows.items():
        budget = fraction * sum(t for n, t in phase_ops[run].items() if names == ("*",) or n in names)
        total = sum(r.time_s for r in members)
        share = np.maximum(total - budget, 0.0) / np.where(total > 0, total, 1.0)
        for r in members:
            r.exposed_s = r.time_s * share
    return Timing(rows, comms, compute, sum(r.time_s for r in comms), sum(r.exposed_s for r in comms))


def _comm_time(c: CommCost, cluster: Cluster) -> CommTime:
    return collective_time(cluster, c.kind, c.bytes, c.p, c.nodes, c.count)
