"""The Plan and what it is computed from: the model, the partition, the shards, each rank's
program of operators and communication points, the collectives and the checks.

Imports go one way: ``core`` → ``plan`` → everything else; nothing here imports torch.
"""

from helixlib.plan.build import Plan, build_plan, decode_plans
from helixlib.plan.model import DTYPE_BYTES, ModelConfig, load_model, preset_names
from helixlib.plan.names import (
    FLOPS_PER_ELEMENT,
    KV_MESH_DIM_NAMES,
    MAPPINGS,
    MESH_DIM_NAMES,
    OUTPUT_MODES,
    QK_MODES,
    CollectiveKind,
    Comm,
    KvPlacement,
    Mapping,
    MeshDim,
    OpKind,
    OutputMode,
    Phase,
    QkMode,
    SecondLevel,
    StepPhase,
    bus_factor,
)
from helixlib.plan.ops import Collective, CommPoint, Op, RankMemory, Shape
from helixlib.plan.partition import Partition, factorisations, valid_partitions
from helixlib.plan.shards import Shard, slice_weight

__all__ = [
    "DTYPE_BYTES", "FLOPS_PER_ELEMENT", "KV_MESH_DIM_NAMES", "MAPPINGS", "MESH_DIM_NAMES", "OUTPUT_MODES",
    "QK_MODES", "Collective", "CollectiveKind", "Comm", "CommPoint", "KvPlacement", "Mapping", "MeshDim",
    "ModelConfig", "Op", "OpKind", "OutputMode", "Partition", "Phase", "Plan", "QkMode", "RankMemory",
    "SecondLevel", "Shape", "Shard", "StepPhase", "build_plan", "bus_factor", "decode_plans", "factorisations",
    "load_model", "preset_names", "slice_weight", "valid_partitions",
]
