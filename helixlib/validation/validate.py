"""The estimator against measurement: predicted and measured step times of the 16-rank CPU run.

As the best estimators are judged (Calculon, Isaev et al., SC'23): calibrate on microbenchmarks
(``helixlib.validation.calibrate``) and one configuration,
then report the error on *held-out* configurations — other sizes, partitions, qk modes and
output variants — as mean and max |%|, and whether the ranking of partitions holds.

* measured: :func:`validation_rank` runs the partitioned block in every rank and times
  forward steps and training steps (forward + backward) alternately with
  :func:`helixlib.runtime.steps.timed_steps` — all ranks start together, a step is the slowest
  rank's, the figure the median over repeats; it also keeps the last training step's
  per-op and per-collective times (median over ranks) to say where a miss comes from;
* predicted: ``estimate(plan, cluster)`` per layer (one block over the whole batch) —
  ``time_no_overlap``, because gloo's collectives in this run block the rank (nothing
  overlaps; the dataflow estimate would hide part of the backward all-reduces behind
  weight-gradient GEMMs that the run does not do);
* error = (predicted − measured) / measured, per config and for forward and training.

Everything the notebook shows is computed here from the results dictionary (what
``benchmarks/validate_cpu.py`` writes to ``data/results/cpu_validation.json``).
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from helixlib.core.numbers import factor_pairs
from helixlib.core.presets import RESULTS_DIR, VALIDATION_MODEL
from helixlib.estimate.estimator import estimate
from helixlib.estimate.hardware import Cluster, cluster_from_dict
from helixlib.plan import QK_MODES, OutputMode, QkMode, build_plan
from helixlib.plan.model import ModelConfig, load_model
from helixlib.plan.partition import Partition

STEPS = ("forward", "training")
#: the recorded validation run (``benchmarks/validate_cpu.py``) the notebook and tests read
RECORDED = RESULTS_DIR / "cpu_validation.json"


def load_results(path: str | Path = RECORDED) -> dict:
    """A validation run's results dictionary, as ``benchmarks/validate_cpu.py`` wrote it."""
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class Config:
    """One configuration of the 16-rank run: a model (with its sizes and dtype) and a partition."""

    model: ModelConfig
    partition: Partition

    @property
    def size(self) -> str:
        m = self.model
        return f"D{m.hidden} L{m.seq_len} B{m.batch}"

    @property
    def label(self) -> str:
        p = self.partition
        return (f"{self.size} {p.head_groups}x{p.dim_segments} {p.qk_mode}"
                + ("" if p.output == OutputMode.ALLREDUCE else f" {p.output}"))

    @property
    def family(self) -> str:
        """Configurations whose partitions are ranked against each other: same sizes and variants."""
        p = self.partition
        return f"{self.size} {p.qk_mode} {p.output}"

    def to_dict(self) -> dict:
        return {"label": self.label, "family": self.family, "model": self.model.to_dict(),
                "partition": self.partition.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return cls(ModelConfig(**d["model"]), Partition.from_dict(d["partition"]))


def default_configs(model: str = VALIDATION_MODEL, world: int = 16) -> tuple[list[Config], list[Config]]:
    """(calibration, held-out). Calibration: the model's own sizes, 4x4, reduce_scores. Held out:
    three other sizes (half the sequence and twice the batch; twice the sequence and half the
    batch; half the width and half the tokens), every partition of ``world`` (those that split
    the head dim for gather_qk) in both qk modes, and the concat output at 4x4."""
    base = load_model(model)
    calibration = [Config(base, Partition(4, 4))]
    held_out = []
    sizes = [base.replace(seq_len=base.seq_len // 2, batch=base.batch * 2),
             base.replace(seq_len=base.seq_len * 2, batch=max(1, base.batch // 2)),
             base.replace(hidden=base.hidden // 2, mlp_hidden=base.mlp_hidden // 2, batch=max(1, base.batch // 2))]
    parts = factor_pairs(world)[::-1]  # n descending: 16x1 first
    for m in sizes:
        for qk in QK_MODES:
            held_out += [Config(m, Partition(n, k, qk)) for n, k in parts if qk == QkMode.REDUCE_SCORES or k > 1]
        held_out.append(Config(m, Partition(4, 4, QkMode.REDUCE_SCORES, OutputMode.CONCAT)))
    return calibration, held_out


# ---- measuring (inside launched ranks) -----------------------------------------------------


def validation_rank(spec, rank: int, world: int, local_rank: int = 0, store_port: int | None = None,
                    progress=None, repeats: int = 5, warmup: int = 1) -> dict | None:
    """Time forward and training steps of ``spec`` (see the module docstring); rank 0 returns
    ``{"forward_s", "training_s", "ops", "collectives", "communicated_bytes"}`` (the last: per
    rank, the bytes its recorded collectives of one training step moved)."""
    from helixlib.runtime.session import rank_session
    from helixlib.runtime.steps import timed_steps
    from helixlib.runtime.verify import run_step

    with rank_session(spec, rank, world, store_port=store_port) as s:
        inputs = s.prepare()
        times = timed_steps({"forward": lambda: run_step(inputs, False),
                             "training": lambda: run_step(inputs, True)}, repeats, warmup)
        trace = inputs.block.trace
        trace.clear()
        run_step(inputs, True)
        parts = {"ops": {}, "collectives": {}, "bytes": sum(c.bytes for c in trace.collectives)}
        for o in trace.ops:
            parts["ops"][o.name] = parts["ops"].get(o.name, 0.0) + o.seconds
        for c in trace.collectives:
            parts["collectives"][c.name] = parts["collectives"].get(c.name, 0.0) + c.seconds
        gathered = s.gather(parts)
        if rank != 0:
            return None
        med = lambda k: {n: statistics.median(g[k].get(n, 0.0) for g in gathered) for n in gathered[0][k]}
        return {"forward_s": times["forward"], "training_s": times["training"], "repeats": repeats,
                "ops": med("ops"), "collectives": med("collectives"),
                "communicated_bytes": [g["bytes"] for g in gathered]}


def measure(config: Config, repeats: int = 5, warmup: int = 1) -> dict:
    """Launch the configuration's ranks and time it (rank 0's dictionary)."""
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    spec = RunSpec(config.model, config.partition, verify=False, collective_timeout_s=300)
    return launch_local(spec, rank_fn=functools.partial(validation_rank, repeats=repeats, warmup=warmup),
                        timeout_s=1800)


# ---- predicting ----------------------------------------------------------------------------


def predict(config: Config, cluster: Cluster) -> dict:
    """Predicted seconds of one forward and one training step (no overlap), with the parts."""
    plan = build_plan(config.model, config.partition)
    fwd = estimate(plan, cluster, search_micro_batch=False)
    train = estimate(plan, cluster, training=True, search_micro_batch=False)
    return {"forward_s": float(fwd.per_layer["time_no_overlap"]),
            "training_s": float(train.per_layer["time_no_overlap"]),
            "ops": {r["name"]: r["forward_s"] for r in fwd.op_rows()},
            "collectives": {r["name"]: r["time_s"] for r in train.collective_rows()},
            "communicated_bytes": plan_bytes(plan)}


def repredict(results: dict) -> dict:
    """The same results with every prediction recomputed by today's estimator from the stored calibration
    (the measurements untouched): how a change to the estimator moves the held-out errors."""
    cluster = cluster_of(results)
    out = dict(results)
    for split in ("calibration_configs", "held_out", "drift"):
        out[split] = [r | {"predicted": predict(Config.from_dict(r["config"]), cluster)} for r in results[split]]
    return out


def plan_bytes(plan) -> list[int]:
    """Per rank, the bytes of the collectives the Plan says one training step calls (each
    collective's message: elements × dtype bytes, as the run's trace records them)."""
    return [sum(c.bytes for c in plan.collectives_for_rank(r)) for r in range(plan.world_size)]


def run_validation(calibration: dict, calibration_configs: list[Config], held_out: list[Config],
                   repeats: int = 5, warmup: int = 1, log=None) -> dict:
    """Measure and predict every configuration on the calibrated cluster (``calibration``:
    ``helixlib.validation.calibrate.Calibration.to_dict()``). The calibration configurations run first
    and again last: the second measurement (``drift``) shows how much the machine moved."""
    from helixlib.validation.calibrate import machine_line

    log = log or (lambda msg: None)
    cluster = cluster_from_dict(calibration["preset"])
    results = {"machine_before": machine_line(), "calibration": calibration, "repeats": repeats, "warmup": warmup,
               "estimate": "per_layer time_no_overlap (gloo collectives block; nothing overlaps)",
               "calibration_configs": [], "held_out": [], "drift": []}
    plan = [("calibration_configs", c) for c in calibration_configs] + [("held_out", c) for c in held_out] \
        + [("drift", c) for c in calibration_configs]
    for i, (split, config) in enumerate(plan):
        measured = measure(config, repeats, warmup)
        predicted = predict(config, cluster)
        results[split].append({"config": config.to_dict(), "measured": measured, "predicted": predicted})
        log(f"{i + 1}/{len(plan)} {split} {config.label}: training measured {measured['training_s'] * 1e3:.1f} ms, "
            f"predicted {predicted['training_s'] * 1e3:.1f} ms")
    results["machine_after"] = machine_line()
    return results


# ---- comparing -----------------------------------------------------------------------------


def error_rows(results: dict, split: str = "held_out") -> list[dict]:
    """Per configuration of ``split`` (calibration_configs, held_out or drift): measured,
    predicted, relative error."""
    rows = []
    for r in results[split]:
        part = r["config"]["partition"]
        row = {"label": r["config"]["label"], "family": r["config"]["family"],
               "partition": f"{part['head_groups']}x{part['dim_segments']}"}
        for step in STEPS:
            meas, pred = r["measured"][f"{step}_s"], r["predicted"][f"{step}_s"]
            row |= {f"{step}_measured_s": meas, f"{step}_predicted_s": pred, f"{step}_error": (pred - meas) / meas}
        rows.append(row)
    return rows


def error_summary(rows: list[dict]) -> dict:
    """Mean and max |relative error| per step kind."""
    out = {}
    for step in STEPS:
        e = np.abs([r[f"{step}_error"] for r in rows])
        out[step] = {"mean_abs": float(e.mean()), "max_abs": float(e.max()), "configs": len(e)}
    return out


def spearman(a, b) -> float:
    """Spearman's rank correlation (no ties expected among measured times)."""
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    if len(ra) < 2:
        return 1.0
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def ranking(rows: list[dict], step: str = "training") -> list[dict]:
    """Per family (same sizes and variants), partitions ("4x4") ordered by measured and by predicted
    time, Spearman's rho, and the pairs whose order the prediction swaps (with the measured gap)."""
    out = []
    for fam in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == fam]
        if len(members) < 2:
            continue
        meas = [r[f"{step}_measured_s"] for r in members]
        pred = [r[f"{step}_predicted_s"] for r in members]
        swaps = []
        for i, j in combinations(range(len(members)), 2):
            if (meas[i] - meas[j]) * (pred[i] - pred[j]) < 0:
                gap = abs(meas[i] - meas[j]) / min(meas[i], meas[j])
                swaps.append({"pair": [members[i]["partition"], members[j]["partition"]], "measured_gap": gap})
        names = [m["partition"] for m in members]
        out.append({"family": fam, "step": step, "measured_order": [names[k] for k in np.argsort(meas)],
                    "predicted_order": [names[k] for k in np.argsort(pred)],
                    "spearman": spearman(meas, pred), "swapped_pairs": swaps})
    return out


def cluster_of(results: dict) -> Cluster:
    """The calibrated cluster the predictions used (kept in the results)."""
    return cluster_from_dict(results["calibration"]["preset"])


#: the issue's goal for held-out configurations: mean and max |relative error|
GOAL = {"mean_abs": 0.15, "max_abs": 0.30}


def verdict(results: dict, split: str = "held_out") -> list[str]:
    """One line per step kind: the held-out errors against :data:`GOAL`, met or not."""
    lines = []
    for step, s in error_summary(error_rows(results, split)).items():
        met = all(s[k] <= GOAL[k] for k in GOAL)
        lines.append(f"{step}: mean |error| {s['mean_abs']:.1%}, max |error| {s['max_abs']:.1%} over "
                     f"{s['configs']} configurations — goal mean <= {GOAL['mean_abs']:.0%}, max <= "
                     f"{GOAL['max_abs']:.0%}: {'met' if met else 'NOT met'}")
    return lines
