"""Time from setting a decode-explorer control's ``.value`` to the explorer having recomputed and
re-rendered its output (helixlib.views.decode_explorer.DecodeExplorer), as a kernel would run it.

    .venv/bin/python benchmarks/decode_explorer_update.py

Each update: the estimate of the chosen configuration, the best configuration of every strategy on the same
GPUs, context and batch (a vectorised sweep), and the HTML (time and memory bars, ranking table). Displays go
to a null stream (rendering in the browser is not counted). Presets are read once per session (the first
change to a new preset pays its YAML parse). Prints the median per kind of change over ``--repeats`` rounds.
Recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import matplotlib

matplotlib.use("Agg")

from widget_update import print_times, time_changes  # noqa: E402  (benchmarks/ is on sys.path as a script)

from helixlib.views.decode_explorer import DecodeExplorer  # noqa: E402

#: (control, two values to toggle between)
CHANGES = [
    ("batch", (16, 8)),
    ("hop_b", (False, True)),
    ("context", (4096, 1048576)),
    ("kv_dtype", ("bf16", None)),
    ("strategy", ("megatron-tp", "helix-kv")),
    ("gpus", (16, 64)),
    ("hardware", ("dgx-b200", "gb200-nvl72")),
    ("model", ("helix-paper-mla-dense", "helix-paper-llama-405b")),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        ex = DecodeExplorer()
    print_times(time_changes(ex, CHANGES, a.repeats),
                "helix-paper-llama-405b, helix-kv 8x8 on gb200-nvl72 unless the control changes it")


if __name__ == "__main__":
    main()
