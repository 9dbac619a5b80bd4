"""``python -m helixlib calibrate``: measure this machine inside n x m concurrent ranks
(:mod:`helixlib.validation.calibrate`) and write the cluster preset the estimator loads."""

from __future__ import annotations

import argparse
import os
import sys

from helixlib.commands.common import EXIT_OK
from helixlib.core.errors import HelixInputError, positive_int
from helixlib.core.files import check_writable, write_text_atomic
from helixlib.core.presets import LOCAL_CLUSTER_FILE, dump_yaml
from helixlib.core.units import table
from helixlib.plan.model import RUNTIME_DTYPES
from helixlib.runtime.spec import MAX_LOCAL_RANKS


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=str(LOCAL_CLUSTER_FILE),
                   help=f"preset file to write (default {LOCAL_CLUSTER_FILE})")
    p.add_argument("--ranks", default="16", help="ranks sharing the cores, as the run starts them (default 16)")
    p.add_argument("--dtypes", default="fp32,fp64", help="matmul / element-wise dtypes (default fp32,fp64)")
    p.add_argument("--quick", action="store_true", help="a small table (a few seconds of measuring, for tests)")
    p.add_argument("--name", default=None, help="preset name (default: the file name)")


def _dtypes(text: str) -> tuple[str, ...]:
    dtypes = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in dtypes if t not in RUNTIME_DTYPES]
    if not dtypes or bad:
        raise HelixInputError("dtypes", f"must be a comma-separated list of {', '.join(RUNTIME_DTYPES)}", text)
    return dtypes


def run(a: argparse.Namespace) -> int:
    ranks = positive_int("ranks", a.ranks, minimum=2)
    if ranks > MAX_LOCAL_RANKS:
        raise HelixInputError("ranks", f"must be at most {MAX_LOCAL_RANKS}", ranks)
    dtypes = _dtypes(a.dtypes)
    out = a.out
    if os.path.isdir(out) or not out.endswith((".yaml", ".yml")):
        raise HelixInputError("out", "must be a .yaml file path", out)
    check_writable("out", out)  # before minutes of measuring
    from helixlib.validation.calibrate import calibrate  # torch: only once the input is known to be good
    from helixlib.views.validate_views import FIT_HEADER, fit_table
    log = lambda msg: print(f"[calibrate] {msg}", file=sys.stderr, flush=True)
    cal = calibrate(ranks, dtypes, a.quick, a.name or os.path.splitext(os.path.basename(out))[0], log)
    fits = table(fit_table([f.to_dict() for f in cal.fits]), FIT_HEADER)
    header = "\n".join(f"# {line}" for line in
                       [f"Measured by python -m helixlib calibrate --ranks {ranks} --dtypes {','.join(dtypes)}"
                        f"{' --quick' if a.quick else ''}", cal.machine, "", "Collective fits (T = alpha + S*f/busbw):"]
                       + fits.splitlines())
    write_text_atomic(out, header + "\n" + dump_yaml(cal.preset))
    dev = cal.preset["device"]
    print(fits)
    print("\nmatmul peak per rank: " + ", ".join(f"{dt} {v / 1e9:.2f} GFLOP/s" for dt, v in dev["matmul_flops"].items())
          + f"; element-wise best {dev['memory_bandwidth'] / 1e9:.2f} GB/s; "
            f"per-op overhead {dev['launch_overhead_s'] * 1e6:.1f} µs")
    print(f"wrote {out}")
    return EXIT_OK
