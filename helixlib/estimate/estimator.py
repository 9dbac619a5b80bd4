"""Runtime and memory of a Plan on a cluster: ``python -m helixlib estimate``.

The estimator reads the Plan — each rank's ops (FLOPs, bytes, GEMM dims as the plan
counts them) and its collectives (group, ranks → nodes by ``rank // gpus_per_node``) —
and prices them with ``helixlib.estimate.roofline`` and ``helixlib.estimate.alphabeta``:

* per layer = one block, forward (+ backward, + recomputed forward) of one micro-batch,
  for the slowest rank; per step = ``B/b`` micro-batches; per model = ``layers`` ×
  per layer. Embeddings, the loss, the optimizer update and data-parallel gradient
  reduction are **not** included (the Plan has none of them);
* three totals (``helixlib.estimate.timing``): no overlap (upper bound), perfect overlap (lower
  bound) and the dataflow estimate between them;
* MFU = model FLOPs / (time × G × dense peak), model FLOPs counting each multiply-add
  twice, the full L×L scores once (no recompute, no gather_qk redundancy), ×3 for
  training;
* memory per GPU (``helixlib.estimate.memory``) against the device, and the largest
  micro-batch that fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helixlib.core.errors import HelixInputError, positive_int
from helixlib.core.numbers import divisors
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.memory import MemoryBreakdown, program_memory
from helixlib.estimate.timing import Timing, program_timing
from helixlib.estimate.workload import Program, fuse_attention, program_from_plan
from helixlib.plan import Plan, QkMode, build_plan
from helixlib.plan.model import ModelConfig

FLASH_BLOCK = 128  # query rows per tile of a flash kernel


def block_flops(B, L, D, F):
    """Dense forward FLOPs of one block for B sequences (2 FLOPs per multiply-add, as in Kaplan et al. 2020,
    arXiv 2001.08361, and Narayanan et al. 2021, arXiv 2104.04473): per sequence QKV 6·L·D²,
    scores 2·L²·D, P·V 2·L²·D, out-proj 2·L·D², MLP 4·L·D·F (arrays allowed)."""
    return B * (8 * L * D * D + 4 * L * L * D + 4 * L * D * F)


def model_flops_per_block(model: ModelConfig, batch: int | None = None) -> int:
    """``block_flops`` of a model (its batch unless ``batch`` is given)."""
    return block_flops(model.batch if batch is None else batch, model.seq_len, model.hidden, model.mlp_hidden)


@dataclass(frozen=True)
class Options:
    training: bool = False
    flash: bool = False
    recompute: bool = False
    micro_batch: int | None = None  # None: the whole batch at once
    flash_block: int = FLASH_BLOCK

    def to_dict(self) -> dict:
        return dict(vars(self))


def rank_program(plan: Plan, rank: int, cluster: Cluster, opts: Options) -> Program:
    prog = program_from_plan(plan, rank, cluster)
    return fuse_attention(prog, plan.model.seq_len, opts.flash_block) if opts.flash else prog


def _distinct_ranks(plan: Plan, cluster: Cluster) -> list[int]:
    """One rank per distinct placement: ranks whose groups span the same numbers of nodes cost the same."""
    seen: dict[tuple, int] = {}
    for r in range(plan.world_size):
        key = tuple(cluster.nodes_spanned(c.ranks) for c in plan.collectives_for_rank(r))
        seen.setdefault(key, r)
    return list(seen.values())


def memory_for_batch(plan: Plan, cluster: Cluster, opts: Options, micro_batch: int) -> MemoryBreakdown:
    micro = build_plan(plan.model.replace(batch=micro_batch), plan.partition)
    prog = rank_program(micro, 0, cluster, opts)
    return program_memory(prog, cluster, plan.model.layers, opts.training, opts.recompute)


def largest_micro_batch(plan: Plan, cluster: Cluster, opts: Options) -> int | None:
    """The largest divisor b of B whose memory fits the device, or None if even b = 1 does not.

    Memory grows with b, so this is a bisection over the sorted divisors of B."""
    ds = divisors(plan.model.batch)
    lo, hi, best = 0, len(ds) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if memory_for_batch(plan, cluster, opts, ds[mid]).fits:
            best, lo = ds[mid], mid + 1
        else:
            hi = mid - 1
    return best


@dataclass(frozen=True)
class Estimate:
    plan: Plan  # the whole batch
    cluster: Cluster
    options: Options
    micro_plan: Plan  # one micro-batch
    rank: int  # the slowest rank, whose program is priced below
    program: Program
    timing: Timing  # one block, one micro-batch
    memory: MemoryBreakdown
    largest_micro_batch: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def micro_batch(self) -> int:
        return self.micro_plan.model.batch

    @property
    def micro_steps(self) -> int:
        return self.plan.model.batch // self.micro_batch

    @property
    def per_layer(self) -> dict:
        """Seconds for one block over the whole batch (all micro-batches)."""
        t = self.timing
        k = self.micro_steps
        return {"compute": t.compute_s * k, "communication": t.communication_s * k,
                "exposed_communication": t.exposed_s * k} | {f"time_{n}": v * k for n, v in t.totals().items()}

    @property
    def per_model(self) -> dict:
        return {k: v * self.plan.model.layers for k, v in self.per_layer.items()}

    @property
    def model_flops(self) -> float:
        """Model FLOPs of the step (all layers, whole batch): forward, ×3 for training."""
        return model_flops_per_block(self.plan.model) * self.plan.model.layers * (3 if self.options.training else 1)

    @property
    def mfu(self) -> dict:
        peak = self.cluster.device.peak_flops(self.plan.model.dtype) * self.plan.world_size
        return {n: self.model_flops / (self.per_model[f"time_{n}"] * peak)
                for n in ("no_overlap", "dataflow", "perfect_overlap")}

    @property
    def communication_share(self) -> dict:
        p = self.per_layer
        return {
            "exposed_of_dataflow_time": p["exposed_communication"] / p["time_dataflow"],
            "all_of_no_overlap_time": p["communication"] / p["time_no_overlap"],
            "communication_over_compute": p["communication"] / p["compute"],
        }

    def breakdown(self) -> list[tuple[str, float, float]]:
        """(name, compute s, exposed communication s) per op and per collective, one layer, whole
        batch: an op's forward (+ backward, + recompute); a collective's runs added up."""
        k, redo = self.micro_steps, 1 + (self.options.training and self.options.recompute)
        rows = [(r.op.name, k * float(redo * r.forward.time_s + r.backward_s), 0.0) for r in self.timing.ops]
        exposed: dict[str, float] = {}
        for r in self.timing.comms:
            name = r.comm.name.removesuffix(".backward")
            exposed[name] = exposed.get(name, 0.0) + k * float(r.exposed_s)
        return rows + [(name, 0.0, t) for name, t in exposed.items() if t > 0]

    def op_rows(self) -> list[dict]:
        rows = []
        for r in self.timing.ops:
            op, t = r.op, r.forward
            rows.append({
                "name": op.name, "kind": op.kind, "flops": int(op.flops), "bytes": int(op.bytes),
                "gemm": None if op.gemm is None else dict(zip(("batch", "m", "k", "n"), map(int, op.gemm))),
                "efficiency": float(t.efficiency), "bound": "compute" if t.compute_s >= t.memory_s else "memory",
                "compute_s": float(t.compute_s), "memory_s": float(t.memory_s),
                "forward_s": float(t.time_s), "backward_s": float(r.backward_s),
            })
        return rows

    def collective_rows(self) -> list[dict]:
        rows = []
        for r in self.timing.comms:
            if not r.weight:
                continue
            c = r.comm
            rows.append({
                "name": c.name if r.run != "recompute" else f"{c.name}.recompute", "kind": c.kind, "run": r.run,
                "group": c.group, "group_size": int(c.p), "nodes": int(c.nodes), "bytes": float(c.bytes),
                "count": int(c.count), "alpha_s": float(r.times.alpha_s), "bandwidth_s": float(r.times.bandwidth_s),
                "time_s": float(r.time_s), "exposed_s": float(r.exposed_s),
                "overlap": None if c.overlap is None else {"phase": c.overlap.phase, "ops": list(c.overlap.ops),
                                                           "fraction": c.overlap.fraction},
            })
        return rows

    def to_dict(self) -> dict:
        m, part = self.plan.model, self.plan.partition
        f = lambda d: {k: float(v) for k, v in d.items()}
        flops_fwd = sum(float(o.flops) for o in self.program.ops)
        return {
            "model": m.to_dict(),
            "partition": part.to_dict(),
            "world_size": self.plan.world_size,
            "hardware": self.cluster.to_dict() | {"nodes": -(-self.plan.world_size // self.cluster.gpus_per_node)},
            "options": self.options.to_dict() | {"micro_batch": self.micro_batch, "micro_steps": self.micro_steps},
            "conventions": CONVENTIONS,
            "rank": self.rank,
            "ops": self.op_rows(),
            "collectives": self.collective_rows(),
            "per_micro_batch": f({"compute": self.timing.compute_s, "communication": self.timing.communication_s,
                                  "exposed_communication": self.timing.exposed_s}
                                 | {f"time_{n}": v for n, v in self.timing.totals().items()}),
            "per_layer": f(self.per_layer),
            "per_model": f(self.per_model),
            "flops": {
                "plan_matmul_per_rank": self.plan.rank_flops(self.rank, "matmul"),
                "forward_per_rank": flops_fwd * self.micro_steps,
                "model_per_step": self.model_flops,
            },
            "mfu": f(self.mfu),
            "communication_share": f(self.communication_share),
            "memory": self.memory.to_dict() | {"largest_micro_batch": self.largest_micro_batch,
                                               "verdict": "fits" if self.memory.fits else "does not fit"},
            "notes": self.notes + self.program.notes,
        }


CONVENTIONS = {
    "flops": "2 per multiply-add; full L x L scores (masked dense kernel); model FLOPs x3 for training",
    "backward": "2 x forward per op (flash attention: 2.5 x its FLOPs at the device's backward flash fraction); "
                "recompute adds the forward again",
    "per_layer": "one block over the whole batch (B/b micro-batches), slowest rank",
    "per_model": "layers x per_layer; embeddings, loss, optimizer update excluded",
    "times": "no_overlap = compute + communication; perfect_overlap = max; dataflow = compute + exposed",
    "bandwidths": "per direction; busbw = bandwidth x efficiency",
    "efficiency": "fraction of the dense matmul peak the FLOP side assumes "
                  "(element-wise ops: vector peak / matmul peak)",
}


def estimate(plan: Plan, cluster: Cluster, training: bool = False, flash: bool = False, recompute: bool = False,
             micro_batch: int | None = None, flash_block: int = FLASH_BLOCK,
             search_micro_batch: bool = True) -> Estimate:
    """Time and memory of ``plan`` on ``cluster`` (see the module docstring).

    ``search_micro_batch=False`` skips the search for the largest micro-batch that fits
    (``largest_micro_batch`` is then None); the explorer takes it from the design-space
    evaluation instead, which tests check agrees."""
    B = plan.model.batch
    b = B if micro_batch is None else positive_int("micro_batch", micro_batch)
    if B % b:
        raise HelixInputError("micro_batch", f"must divide the batch ({B})", b)
    if plan.world_size > 1 and plan.world_size % cluster.gpus_per_node and plan.world_size > cluster.gpus_per_node:
        raise HelixInputError("world_size", f"must fill whole nodes of {cluster.gpus_per_node} GPUs", plan.world_size)
    cluster.device.peak_flops(plan.model.dtype)  # the device must know the dtype
    opts = Options(training, flash, recompute, micro_batch, positive_int("flash_block", flash_block))
    micro = plan if b == B else build_plan(plan.model.replace(batch=b), plan.partition)
    best = None
    for r in _distinct_ranks(micro, cluster):
        prog = rank_program(micro, r, cluster, opts)
        t = program_timing(prog, cluster, plan.model.dtype, training, recompute)
        if best is None or t.dataflow_s > best[2].dataflow_s:
            best = (r, prog, t)
    rank, prog, timing = best
    memory = program_memory(prog, cluster, plan.model.layers, training, recompute)
    notes = []
    if not plan.partition.exact:
        notes.append(f"{plan.partition.qk_mode} is not attention (the partial scores are never summed): "
                     "this is what the wrong dataflow would cost")
    if flash and plan.partition.qk_mode == QkMode.REDUCE_SCORES and plan.partition.dim_segments > 1:
        notes.append(f"flash with partial scores: one score all-reduce per {flash_block} query rows, "
                     "and again in backward (hypothetical kernel, see helixlib.estimate.workload.fuse_attention)")
    return Estimate(plan, cluster, opts, micro, rank, prog, timing, memory,
                    largest_micro_batch(plan, cluster, opts) if search_micro_batch else None, notes)
