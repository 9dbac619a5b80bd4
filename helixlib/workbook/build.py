"""``python -m helixlib.workbook``: execute every notebook into ``build/notebooks`` (signed, so
JupyterLab trusts their outputs), write the HTML edition into ``build/html`` (``index.html`` in
reading order) and the CLI's artefacts into ``build/artefacts`` (what ``make workbook`` runs).
Bad input (``--out`` naming a file) is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

from helixlib.commands.main import main as cli_main
from helixlib.core.errors import HelixInputError
from helixlib.core.files import write_text_atomic
from helixlib.workbook.html import sign_notebook, write_html_edition
from helixlib.workbook.notebooks import NotebookFailed, execute_notebook, notebook_paths

#: (file name, CLI arguments) written into build/artefacts; stdout goes to the file
ARTEFACTS = [
    ("audit.json", ["audit", "--json"]),
    ("plan_helix-70b_4x4.json", ["plan", "--model", "helix-70b", "-n", "4", "-m", "4", "--json"]),
    ("plan_helix-70b_4x4_gather_qk.json", ["plan", "--model", "helix-70b", "-n", "4", "-m", "4",
                                           "--qk-mode", "gather_qk", "--json"]),
    ("plan_helix-70b_4x4.txt", ["plan", "--model", "helix-70b", "-n", "4", "-m", "4"]),
    ("run_helix-tiny_4x4.txt", ["run", "--model", "helix-tiny", "-n", "4", "-m", "4", "--backward",
                                "--save", "{out}/run_helix-tiny_4x4.json"]),
    # the deployment plan's three DAG files (.dot, .svg, .png) under dag/; the checks go to the .txt
    ("dag_helix-70b_4x4.txt", ["dag", "--model", "helix-70b", "-n", "4", "-m", "4", "--out", "{out}/dag"]),
    ("dag_helix-70b_4x4_gather_qk_concat.txt", ["dag", "--model", "helix-70b", "-n", "4", "-m", "4",
                                                "--qk-mode", "gather_qk", "--output", "concat",
                                                "--out", "{out}/dag_gather_qk_concat"]),
    ("estimate_helix-70b_4x4_a100.json", ["estimate", "--model", "helix-70b", "-n", "4", "-m", "4",
                                          "--hardware", "dgx-a100", "--json"]),
    ("estimate_decode_llama-405b_helix-kv_8x8_nvl72.json", [
        "estimate", "--phase", "decode", "--model", "helix-paper-llama-405b", "--hardware", "gb200-nvl72",
        "--strategy", "helix-kv", "--head-groups", "8", "--kv-shards", "8", "--context", "1048576", "--batch", "8",
        "--hop-b", "--json"]),
]


def _artefact(out_dir: Path, name: str, argv: list[str]) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main([a.replace("{out}", str(out_dir)) for a in argv])
    if rc not in (0, 1):  # 1 = computed, but a check or a claim failed: still an artefact
        raise RuntimeError(f"python -m helixlib {' '.join(argv)} exited {rc}")
    if buf.getvalue():
        write_text_atomic(out_dir / name, buf.getvalue())


def output_folder(value: str) -> Path:
    """``--out``: a folder (created if missing); a path that is, or lies under, a file is refused."""
    out = Path(value)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise HelixInputError("--out", f"must be a folder, but {p} is a file", value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helixlib.workbook", description=__doc__)
    ap.add_argument("--out", default="build", help="output folder (default build)")
    ap.add_argument("--only", default=None, help="run only notebooks whose name contains this")
    a = ap.parse_args(argv)
    try:
        out = output_folder(a.out)
    except HelixInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    nbs = [p for p in notebook_paths() if a.only is None or a.only in p.name]
    failures, executed = 0, []
    for i, nb in enumerate(nbs, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(nbs)}] {nb.name} ...", end=" ", flush=True)
        try:
            executed.append(execute_notebook(nb, out / "notebooks" / nb.name))
            sign_notebook(executed[-1])
            print(f"ok ({time.perf_counter() - t0:.1f} s)", flush=True)
        except NotebookFailed as exc:
            failures += 1
            print(f"FAILED ({time.perf_counter() - t0:.1f} s)\n{exc}", flush=True)
    t0 = time.perf_counter()
    pages = write_html_edition(executed, out / "html")
    print(f"[html] {len(pages)} pages and index.html ({time.perf_counter() - t0:.1f} s)", flush=True)
    art = out / "artefacts"
    art.mkdir(parents=True, exist_ok=True)
    for name, argv_ in ARTEFACTS:
        print(f"[artefact] {name}", flush=True)
        _artefact(art, name, argv_)
    print(f"\nnotebooks: {out / 'notebooks'}  html: {out / 'html' / 'index.html'}  artefacts: {art}"
          + (f"  FAILED: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
