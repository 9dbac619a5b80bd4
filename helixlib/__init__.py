"""helixlib: two-level attention partitioning (head groups × head-dim segments).

The pipeline, one module each: ``config`` (models) → ``partition`` (n × m) →
``plan`` (ranks, shards, ops, collectives, memory) → ``checks``, ``simulate``,
``layer`` + ``launch`` (torch.distributed), ``dag``, ``estimate``, ``audit``.
"""

from .config import ModelConfig, load_model, preset_names
from .errors import HelixInputError
from .partition import Partition, factorisations
from .plan import Plan, build_plan

__all__ = ["ModelConfig", "load_model", "preset_names", "HelixInputError", "Partition", "factorisations",
           "Plan", "build_plan"]
