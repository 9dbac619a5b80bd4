"""One decode configuration, checked and priced: what ``estimate --phase decode`` prints.

:class:`DecodeConfig` names the configuration (strategy, the two levels, pipeline stages, replicas,
context, batch, dtypes, cache layout, HOP-B); :func:`check_decode_config` refuses what the strategy cannot
run with one :class:`~helixlib.core.errors.HelixInputError` naming the option and the rule (the same
rules ``helixlib.estimate.decode`` applies to arrays as ``valid``); :func:`decode_estimate` prices it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.estimate.decode import DECODE_FIELDS, decode_costs
from helixlib.estimate.decode_layout import DecodeLayout, decode_layout
from helixlib.estimate.hardware import Cluster
from helixlib.plan.model import DTYPE_BYTES, ModelConfig
from helixlib.plan.names import DECODE_STRATEGIES, DecodeStrategy, KvLayout

#: bounds that keep every product of sizes exact in int64 / float64 (a larger value is a typo, not a run)
LIMITS = {"context": 2 ** 40, "batch": 2 ** 31}
MAX_LEVEL = 2 ** 20  # GPUs in one level (split, second, pipeline, replicas)

#: the option that sets each level, per strategy (what error messages name)
SPLIT_FIELD = {DecodeStrategy.MEGATRON_TP: "tensor_parallel", DecodeStrategy.HELIX: "head_groups",
               DecodeStrategy.HELIX_KV: "head_groups"}
SECOND_FIELD = {DecodeStrategy.MEGATRON_TP: "tensor_parallel", DecodeStrategy.HELIX: "dim_segments",
                DecodeStrategy.HELIX_KV: "kv_shards"}


@dataclass(frozen=True)
class DecodeConfig:
    """One decode configuration: ``split`` (t, n or TP_A) × ``second`` (1, m or KVP) GPUs per group,
    ``pipeline`` stages, ``replicas`` data-parallel copies; None dtypes: the model's."""

    strategy: str
    split: int
    second: int
    context: int  # S, tokens in every sequence's KV cache
    batch: int  # B, sequences decoded together on all the GPUs
    pipeline: int = 1
    replicas: int = 1
    hop_b: bool = False
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    kv_layout: str = KvLayout.SEPARATE

    @property
    def width(self) -> int:
        return self.split * self.second

    @property
    def gpus(self) -> int:
        return self.width * self.pipeline * self.replicas

    def label(self) -> str:
        return decode_label(self.strategy, self.split, self.second, self.pipeline, self.replicas)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"width": self.width, "gpus": self.gpus, "label": self.label()}


def decode_label(strategy: str, split: int, second: int, pipeline: int = 1, replicas: int = 1) -> str:
    """'TP 8', 'helix 4x2 (n x m)', 'helix-kv TP_A 8 x KVP 8', with ' PP p' and ' DP r' when used."""
    if strategy == DecodeStrategy.MEGATRON_TP:
        text = f"TP {split}"
    elif strategy == DecodeStrategy.HELIX:
        text = f"helix {split}x{second} (n x m)"
    else:
        text = f"helix-kv TP_A {split} x KVP {second}"
    return text + (f" PP {pipeline}" if pipeline > 1 else "") + (f" DP {replicas}" if replicas > 1 else "")


def check_decode_config(model: ModelConfig, cluster: Cluster, cfg: DecodeConfig) -> None:
    """Raise :class:`HelixInputError` (the option and its rule) unless ``cfg`` can run."""
    one_of("strategy", cfg.strategy, DECODE_STRATEGIES)
    one_of("kv_cache", cfg.kv_layout, tuple(KvLayout))
    options = {"split": SPLIT_FIELD[cfg.strategy], "second": SECOND_FIELD[cfg.strategy],
               "pipeline": "pipeline_parallel", "replicas": "data_parallel"}
    for name in ("split", "second", "context", "batch", "pipeline", "replicas"):
        field, value = options.get(name, name), getattr(cfg, name)
        if positive_int(field, value) > LIMITS.get(name, MAX_LEVEL):
            raise HelixInputError(field, f"must be at most {LIMITS.get(name, MAX_LEVEL):,}", value)
    for name in ("weight_dtype", "kv_dtype"):
        if getattr(cfg, name) is not None:
            one_of(name, getattr(cfg, name), tuple(DTYPE_BYTES))
    s, H, K = cfg.strategy, model.heads, model.kv_heads
    split, second, W = cfg.split, cfg.second, cfg.width
    rules = [
        (H % split == 0, SPLIT_FIELD[s], f"must divide the query heads H = {H}", split),
        (K % split == 0 or split % K == 0, SPLIT_FIELD[s],
         f"must divide the KV heads K = {K} or be a multiple of it", split),
        (s != DecodeStrategy.MEGATRON_TP or second == 1, "second", "must be 1 for megatron-tp", second),
        (s != DecodeStrategy.HELIX or (model.head_dim_qk % second == 0 and model.head_dim_v % second == 0),
         "dim_segments", f"must divide both head dims ({model.head_dim_qk}, {model.head_dim_v})", second),
        (s != DecodeStrategy.HELIX_KV or K % split == 0, "head_groups",
         f"helix-kv keeps TP_A <= K: must divide the KV heads K = {K}", split),
        (s != DecodeStrategy.HELIX_KV or second <= cfg.context, "kv_shards",
         f"must be at most the context S = {cfg.context}", second),
        (model.mlp_hidden % W == 0, "width", f"the group's {W} GPUs must divide the FFN width {model.mlp_hidden}", W),
        (H * model.head_dim_v % W == 0, "width", f"the group's {W} GPUs must divide H·d_v = {H * model.head_dim_v}",
         W),
        (cfg.kv_layout != KvLayout.LATENT or model.head_dim_v <= model.head_dim_qk, "kv_cache",
         "latent needs head_dim_v <= head_dim_qk (the value is part of the key)", cfg.kv_layout),
        (model.layers % cfg.pipeline == 0, "pipeline_parallel", f"must divide the layers ({model.layers})",
         cfg.pipeline),
        (cfg.batch % (cfg.pipeline * cfg.replicas) == 0, "batch",
         f"must be a multiple of pipeline stages x replicas = {cfg.pipeline * cfg.replicas}", cfg.batch),
        (cfg.gpus <= cluster.gpus_per_node or W % cluster.gpus_per_node == 0 or cluster.gpus_per_node % W == 0,
         "gpus", f"a group of {W} GPUs would straddle {cluster.name}'s nodes of {cluster.gpus_per_node}", cfg.gpus),
    ]
    for ok, field, rule, got in rules:
        if not ok:
            raise HelixInputError(field, rule, got)


@dataclass(frozen=True)
class DecodeEstimate:
    model: ModelConfig
    cluster: Cluster
    config: DecodeConfig
    layout: DecodeLayout
    costs: dict  # field -> float (``DECODE_FIELDS``)

    @property
    def ttl_s(self) -> float:
        """The token-to-token latency of the configuration as asked (with HOP-B if it asks for it)."""
        return self.costs["ttl_hop_b_s" if self.config.hop_b else "ttl_s"]

    def to_dict(self) -> dict:
        c, hop = self.costs, self.config.hop_b
        sfx = "_hop_b" if hop else ""
        decode = {
            "ttl_s": self.ttl_s, "tokens_per_s_per_gpu": c["tokens_per_s_per_gpu" + sfx],
            "tokens_per_s_per_user": c["tokens_per_s_per_user" + sfx], "max_batch": int(c["max_batch"]),
            "ttl_no_overlap_s": c["ttl_s"], "ttl_hop_b_s": c["ttl_hop_b_s"], "hop_b": hop,
            "kv_duplication": c["duplication"], "gpus": int(c["gpus"]),
        }
        breakdown = {k: c[k] for k in ("weight_read_s", "kv_read_s", "compute_s", "launch_s", "communication_s",
                                       "attention_comm_s", "exposed_communication_hop_b_s", "layer_s")}
        memory = {k.removesuffix("_bytes") + "_bytes": c[k] for k in (
            "weights_bytes", "kv_cache_bytes", "working_bytes", "comm_buffer_bytes", "reserved_bytes")}
        memory.update(total_bytes=c["memory_bytes"], capacity_bytes=c["capacity_bytes"], fits=bool(c["fits"]))
        return {
            "phase": "decode", "model": self.model.to_dict(), "hardware": self.cluster.name,
            "config": self.config.to_dict(), "decode": decode, "breakdown_per_token": breakdown, "memory": memory,
            "per_gpu_layer": {k: _py(v) for k, v in self.layout._asdict().items() if k != "valid"},
            "conventions": CONVENTIONS,
        }


CONVENTIONS = [
    "ttl_s: one token for every sequence, all layers + the logits GEMM (+ pipeline sends); with HOP-B when asked",
    "throughput: tokens_per_s_per_gpu = batch / (ttl_s x gpus); tokens_per_s_per_user = 1 / ttl_s",
    "memory: per GPU (the busiest of the group); kv_cache_bytes for the replica's batch/replicas sequences",
    "breakdown: weight reads + KV reads at HBM bandwidth x memory_efficiency, compute beyond the memory side, "
    "kernel launches, collectives; they sum to ttl_no_overlap_s. kv_read_s is the attention kernel's HBM "
    "traffic: the cache (and, for helix, its partial scores written and read back)",
    "activations and partial outputs on the wire in bf16, log-sum-exp in fp32",
]


def _py(v):
    return v.item() if hasattr(v, "item") else v


def decode_estimate(model: ModelConfig, cluster: Cluster, cfg: DecodeConfig) -> DecodeEstimate:
    """Check ``cfg`` and price it (``helixlib.estimate.decode.decode_costs``)."""
    check_decode_config(model, cluster, cfg)
    costs = decode_costs(model, cluster, cfg.strategy, cfg.split, cfg.second, cfg.context, cfg.batch, cfg.pipeline,
                         cfg.replicas, cfg.weight_dtype, cfg.kv_dtype, cfg.kv_layout)
    values = {f: costs[f][0].item() for f in DECODE_FIELDS}
    assert values["valid"], "check_decode_config and decode_costs disagree"
    layout = decode_layout(model, cfg.strategy, cfg.split, cfg.second, cfg.context, cfg.kv_layout)
    return DecodeEstimate(model, cluster, cfg, layout, values)
