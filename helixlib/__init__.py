"""helixlib: two-level attention partitioning (head groups × head-dim segments).

The pipeline, one module each: ``config`` (models) → ``partition`` (n × m) →
``plan`` (ranks, shards, ops, collectives, memory) → ``checks``, ``simulate``,
``layer`` + ``launch`` (torch.distributed), ``dag``, ``estimate``, ``audit``.
"""

from helixlib.core.errors import HelixInputError
from helixlib.plan.build import Plan, build_plan
from helixlib.plan.model import ModelConfig, load_model, preset_names
from helixlib.plan.partition import Partition, factorisations

__all__ = ["ModelConfig", "load_model", "preset_names", "HelixInputError", "Partition", "factorisations",
           "Plan", "build_plan"]
