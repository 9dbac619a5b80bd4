"""``python -m helixlib <command>``: plan, run, audit, dag, estimate, calibrate.

Each command is a module of this package with ``add_args(parser)`` and ``run(args) -> exit
code``, imported only when it runs (``plan`` needs no torch.distributed). Bad input prints one
line, ``error: <field>: <rule>, got <value>``, and exits with 2. Interruptions are one line too:
Ctrl-C prints ``error: interrupted`` (exit 130, after the command's own cleanup); a reader that
goes away (``| head -1``) ends the command quietly (exit 141, as Unix tools do); an output that
cannot be written (a full disk) is ``error: <file>: cannot be written (<reason>)``, exit 1.
"""

from __future__ import annotations

import importlib
import os
import sys

from helixlib.commands.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_CHECK_FAILED, EXIT_INTERRUPTED, Parser
from helixlib.core.errors import HelixInputError

#: command -> what it does (its module is helixlib.commands.<command>)
COMMANDS = {
    "plan": "the partition plan: ranks, shards, ops, collectives, memory, checks",
    "run": "run the block on n x m processes; verify against dense; monitor",
    "audit": "check a deployment plan's claims, one by one",
    "dag": "operator-level DAGs of the plan: checked, written as .dot, rendered",
    "estimate": "runtime and memory of the plan on a cluster (roofline + alpha-beta)",
    "calibrate": "measure this machine inside n x m concurrent ranks and write a cluster preset",
}


def _command(name: str):
    return importlib.import_module(f"helixlib.commands.{name}")


def build_parser(argv: list[str] | None = None) -> Parser:
    """The parser; only the chosen command's module is imported to add its options."""
    parser = Parser(prog="python -m helixlib", description="Two-level attention partitioning workbook.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    chosen = argv[0] if argv else None
    for name, help_ in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            _command(name).add_args(sp)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush finds nowhere to fail."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser(argv).parse_args(argv)
    try:
        code = _command(a.command).run(a)
        sys.stdout.flush()  # a closed pipe or a full disk shows here, not as a traceback at exit
        return code
    except HelixInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as err:  # writing an output failed after the checks (a full disk, a vanished folder)
        if err.filename is None:  # stdout itself
            _silence_stdout()
        print(f"error: {err.filename or 'output'}: cannot be written ({err.strerror or err})", file=sys.stderr)
        return EXIT_CHECK_FAILED
