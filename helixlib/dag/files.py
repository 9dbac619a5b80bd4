"""``python -m helixlib dag``: the deployment plan's three DAG files, built from the Plan,
checked, written as DOT and rendered with Graphviz's ``dot``.

==================================  ==================================================
file (the plan's names)             graph
==================================  ==================================================
``mha_layer_0_partitioned``         attention of layer 0, x -> x1, every operator of
                                    every rank, every communication point
``mlp_layer_0_tensor_parallel``     MLP of layer 0, x1 -> out
``complete_helix_model``            all layers, checked in full; drawn as layer 0 (one
                                    node per rank per run of operators between two
                                    communication points) + one node for layers 1..L-1
==================================  ==================================================

helix-70b has 87 layers × 16 ranks, about 20k operator nodes: the complete model is built
and checked at that size, but a drawing of it would be unreadable, so the drawing is a
contraction (:func:`helixlib.dag.graph.model_view`). ``--compact`` draws the two layer-0 files the
same way, with rank ``--rank`` operator by operator: for partitions of many ranks.

Each file is written to a temporary name and renamed (:mod:`helixlib.core.files`), so an error
leaves no half-written file. Without ``dot`` the .dot files are written and the message says how to render them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from helixlib.core.errors import HelixInputError
from helixlib.core.files import write_bytes_atomic, write_text_atomic
from helixlib.dag.checks import run_dag_checks
from helixlib.dag.graph import Dag, build_dag
from helixlib.dag.render import INSTALL_HINT, DotNotFound, dot_program, dot_source
from helixlib.dag.views import model_view, stage_view
from helixlib.plan import Plan, StepPhase
from helixlib.plan.checks import CheckResult

FILES = ("mha_layer_0_partitioned", "mlp_layer_0_tensor_parallel", "complete_helix_model")
FORMATS = ("svg", "png", "pdf")
#: layers x ranks of the largest complete-model DAG built (about 30 s of building and checking here)
MAX_BLOCKS = 8192


@dataclass
class DagFile:
    """One drawing: the full graph (checked), the view drawn, and what was written."""

    name: str
    graph: Dag
    view: Dag
    checks: list[CheckResult]
    written: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def dag_files(plan: Plan, compact: bool = False, rank: int = 0) -> list[DagFile]:
    """The three graphs of the deployment plan, their views and their checks (nothing written)."""
    blocks = plan.model.layers * plan.world_size
    if blocks > MAX_BLOCKS:
        raise HelixInputError("layers", f"layers x ranks must be at most {MAX_BLOCKS} for the complete model's DAG "
                                        f"(every operator of every block is built and checked)", blocks)
    expand = rank if compact else None
    bwd = plan.phase != StepPhase.DECODE  # a decode step has no backward
    graphs = (build_dag(plan, "mha", backward=bwd), build_dag(plan, "mlp", backward=bwd),
              build_dag(plan, "block", plan.model.layers, backward=bwd))
    views = [stage_view(g, expand) if compact else g for g in graphs[:2]] + [model_view(graphs[2], expand)]
    return [DagFile(name, g, v, run_dag_checks(g, plan)) for name, g, v in zip(FILES, graphs, views)]


def render(dot_path: Path, fmt: str) -> Path:
    """``dot -T<fmt> file.dot`` into ``file.<fmt>`` (atomically); raises DotNotFound without ``dot``."""
    r = subprocess.run([dot_program(), f"-T{fmt}", str(dot_path)], capture_output=True)
    if r.returncode:
        raise RuntimeError(f"dot failed on {dot_path}: {r.stderr.decode(errors='replace').strip()}")
    return write_bytes_atomic(dot_path.with_suffix(f".{fmt}"), r.stdout)


def render_commands(paths: list[Path], formats: tuple[str, ...]) -> list[str]:
    return [f"dot -T{fmt} {p} -o {p.with_suffix('.' + fmt)}" for p in paths for fmt in formats]


def write_dag_files(plan: Plan, out_dir: str | Path, formats: tuple[str, ...] = ("svg", "png"),
                    compact: bool = False, rank: int = 0) -> tuple[list[DagFile], str | None]:
    """Write the three .dot files into ``out_dir`` and render them in ``formats``. Returns the
    files and, when ``dot`` is missing, the message saying how to render them."""
    files = dag_files(plan, compact, rank)
    for f in files:
        f.written.append(write_text_atomic(Path(out_dir) / f"{f.name}.dot", dot_source(f.view, plan, f.name)))
    try:
        for f in files:
            f.written += [render(f.written[0], fmt) for fmt in formats]
    except DotNotFound:
        commands = render_commands([f.written[0] for f in files], formats)
        return files, (f"Graphviz's `dot` is not on PATH, so only the .dot files were written; "
                       f"{INSTALL_HINT}, then render with:\n  " + "\n  ".join(commands))
    return files, None
