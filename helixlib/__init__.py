"""helixlib: two-level attention partitioning (head groups × head-dim segments).

One object, the Plan, is the source of truth; the subpackages are the architecture, and imports
go one way (``tests/test_layout.py`` checks it)::

    core ─> plan ─┬─> runtime ──┬─> dag ─────┐
                  ├─> estimate ─┼─> validation ┼─> audit ─> views ─> commands ─> workbook
                  └─────────────┴────────────┘

``core`` (errors, units, files, presets), ``plan`` (model, partition, shards, program, collectives,
checks), ``runtime`` (the torch layer, communicator, simulation, rank session, launchers),
``estimate`` (hardware, roofline, α–β, memory, strategies, design space), ``dag`` (graphs of the
plan and of a run), ``validation`` (calibration and measured-vs-predicted), ``audit`` (the
deployment plan's claims), ``views`` (tables, reports, plots, widgets), ``commands`` (the CLI),
``workbook`` (every notebook, executed).
"""

from helixlib.core.errors import HelixInputError
from helixlib.plan import ModelConfig, Partition, Plan, build_plan, factorisations, load_model, preset_names

__all__ = ["HelixInputError", "ModelConfig", "Partition", "Plan", "build_plan", "factorisations", "load_model",
           "preset_names"]
