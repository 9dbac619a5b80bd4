"""The estimator against the 16-rank CPU run: calibrate this machine, then predict and measure
one calibration configuration and held-out ones (other sizes, partitions, qk modes, output),
side by side; write the results for notebook 04 and print the error table and the ranking.

    .venv/bin/python benchmarks/validate_cpu.py [--model helix-small] [--repeats 5]
        [--out data/results/cpu_validation.json] [--calibration FILE.json] [--quick]

``--calibration`` reuses a calibration saved by an earlier run (its ``calibration`` field);
``--quick`` is a smoke test (quick calibration, helix-tiny, three configurations);
``--repredict`` measures nothing: it recomputes the predictions of the recorded run (``--out``) with
today's estimator from its stored calibration, rewrites the file and prints the tables.
"""

import argparse
import json
import sys

from _machine import machine

from helixlib.core.files import write_text_atomic
from helixlib.core.units import table
from helixlib.plan.partition import Partition
from helixlib.validation.calibrate import calibrate
from helixlib.validation.validate import Config, default_configs, error_rows, repredict, run_validation
from helixlib.views.validate_views import (
    BYTES_HEADER,
    ERROR_HEADER,
    FIT_HEADER,
    RANKING_HEADER,
    SPLITS,
    SUMMARY_HEADER,
    bytes_table,
    error_table,
    fit_table,
    ranking_table,
    summary_table,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="helix-small")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="data/results/cpu_validation.json")
    ap.add_argument("--calibration", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repredict", action="store_true")
    a = ap.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    print(machine())
    if a.repredict:
        results = repredict(json.load(open(a.out)))
        results["repredicted"] = f"{machine()}: predictions recomputed from the stored calibration (benchmarks/" \
                                 "validate_cpu.py --repredict); measurements as recorded"
        write_text_atomic(a.out, json.dumps(results, indent=1))
        return report(results, a)
    if a.quick:
        from helixlib import load_model

        tiny = load_model("helix-tiny")
        cal_cfgs = [Config(tiny, Partition(4, 4))]
        held = [Config(tiny.replace(seq_len=64), Partition(16, 1)), Config(tiny, Partition(2, 8, "gather_qk"))]
    else:
        cal_cfgs, held = default_configs(a.model)
    if a.calibration:
        cal = json.load(open(a.calibration))["calibration"]
    else:
        dtypes = tuple(dict.fromkeys(c.model.dtype for c in cal_cfgs + held))
        cal = calibrate(16, dtypes, a.quick, log=lambda msg: log(f"[calibrate] {msg}")).to_dict()
    results = run_validation(cal, cal_cfgs, held, a.repeats, log=log)
    results["command"] = " ".join(["benchmarks/validate_cpu.py"] + sys.argv[1:])
    results["model"], results["configs"] = ("helix-tiny", "quick") if a.quick else (a.model, "default")
    write_text_atomic(a.out, json.dumps(results, indent=1))
    report(results, a)


def report(results: dict, a) -> None:
    print(f"calibrated: {results['calibration']['machine']}")
    print(f"validated:  {results['machine_before']}  ->  {results['machine_after']}")
    print("\ncollective fits:\n" + table(fit_table(results["calibration"]["collective_fits"]), FIT_HEADER))
    for split, name in SPLITS.items():
        rows = error_rows(results, split)
        print(f"\n{name} ({len(rows)} configurations), median of {results['repeats']} steps (slowest rank):")
        print(table(error_table(rows), ERROR_HEADER))
    print("\n" + table(summary_table(results), SUMMARY_HEADER))
    print("\nranking of partitions (training step), held out:\n" + table(ranking_table(results), RANKING_HEADER))
    print("\ncommunicated bytes, Plan against the run:\n" + table(bytes_table(results), BYTES_HEADER))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
