"""What every command shares: the one-line usage errors, the exit codes, JSON output (always
valid JSON), and the options that build a Plan (``--model``, ``-n``, ``-m``, the variants and the
size overrides)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

from helixlib.core.errors import HelixInputError
from helixlib.core.presets import DEFAULT_MODEL
from helixlib.plan import (
    OUTPUT_MODES,
    QK_MODES,
    KvPlacement,
    OutputMode,
    Partition,
    Plan,
    QkMode,
    StepPhase,
    build_plan,
    load_model,
)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # computed, but a check, a comparison or a run failed
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away (``| head``), as Unix tools exit


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option, and a value that starts with
    a minus and a digit (``--inject-fault -1:x:raise``) is a value, not an unknown option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse's own hook for negative values: -1:x:raise, -.5, -inf and -nan are values too
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def _non_finite_at(obj, where: str = "") -> str | None:
    """Where the first NaN or infinity in ``obj`` (dicts, lists, numbers) is, e.g. ``totals.time_s``."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where or "value"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite_at(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found:
            return found
    return None


def json_text(obj) -> str:
    """``obj`` as JSON text. JSON has no NaN or infinity: a result holding one is refused, naming
    where it is, instead of printing text a JSON parser rejects."""
    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:
        where = _non_finite_at(obj)
        if where is None:
            raise
        raise HelixInputError(where, "is not a finite number (an input is out of range)") from None


def print_json(obj) -> None:
    """Print ``obj`` as one line of valid JSON (see :func:`json_text`)."""
    text = json_text(obj)
    sys.stdout.write(text + "\n")


def print_result(a: argparse.Namespace, as_dict, as_text) -> int:
    """Print a command's result: ``as_dict()`` as JSON with ``--json``, else ``as_text()``; exit 0."""
    if a.json:
        print_json(as_dict())
    else:
        print(as_text())
    return EXIT_OK


def add_plan_args(p: argparse.ArgumentParser, model: str = DEFAULT_MODEL) -> None:
    """Options every command that builds a Plan shares."""
    p.add_argument("--model", default=model, help=f"preset name or YAML file (default {model})")
    p.add_argument("--head-groups", "-n", default="4", help="n, head groups (default 4)")
    p.add_argument("--dim-segments", "-m", default=None, help="m, head-dim segments (default 4; 1 with --kv-shards)")
    p.add_argument("--kv-shards", default=None,
                   help="p, KV-sequence shards (Helix Parallelism): the second level instead of --dim-segments")
    p.add_argument("--kv-placement", default=KvPlacement.ROUND_ROBIN,
                   help=f"which shard owns a block of KV positions: one of {', '.join(KvPlacement)}")
    p.add_argument("--tokens-per-block", default=None,
                   help="KV positions per block (default 32, fewer when the context has under 2 blocks per shard)")
    p.add_argument("--hop-b", nargs="?", const="2", default="1", metavar="CHUNKS",
                   help="HOP-B with KV shards: the batch in CHUNKS chunks, each chunk's All-to-All overlapping the "
                        "next chunk's attention (default 1: no overlap; the flag alone: 2; the decode estimate "
                        "overlaps per request whenever CHUNKS > 1)")
    p.add_argument("--phase", default=StepPhase.PREFILL,
                   help=f"one of {', '.join(StepPhase)} (decode: one new token per sequence, a cache of seq_len)")
    p.add_argument("--qk-mode", default=QkMode.REDUCE_SCORES,
                   help=f"one of {', '.join(QK_MODES)}; {QkMode.SEGMENT_LOCAL} is the plan's literal (incorrect) "
                        "dataflow")
    p.add_argument("--output", default=OutputMode.ALLREDUCE, help=f"one of {', '.join(OUTPUT_MODES)}")
    p.add_argument("--world-size", default=None, help="check that n x m equals this many ranks")
    for flag in ("seq-len", "batch", "layers", "kv-heads"):
        p.add_argument(f"--{flag}", default=None, help=f"override the preset's {flag.replace('-', '_')}")
    p.add_argument("--dtype", default=None,
                   help="override the preset's dtype (fp64, fp32, bf16, fp16; fp8 for estimates)")
    p.add_argument("--causal", default=None, choices=("true", "false"), help="override the preset's causal")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def partition_from_args(a: argparse.Namespace) -> Partition:
    """The partition the options name (``--kv-shards`` makes the second level KV shards)."""
    kv = a.kv_shards is not None
    m = a.dim_segments if a.dim_segments is not None else ("1" if kv else "4")
    return Partition(a.head_groups, m, a.qk_mode, a.output, a.kv_shards if kv else 1, a.kv_placement,
                     a.tokens_per_block, a.hop_b)


def plan_from_args(a: argparse.Namespace) -> Plan:
    causal = None if a.causal is None else a.causal == "true"
    model = load_model(a.model, seq_len=a.seq_len, batch=a.batch, layers=a.layers, dtype=a.dtype, causal=causal,
                       kv_heads=a.kv_heads)
    return build_plan(model, partition_from_args(a), a.world_size, a.phase)
