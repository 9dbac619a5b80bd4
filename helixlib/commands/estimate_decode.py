"""``python -m helixlib estimate --phase decode``: token latency, throughput and memory of one decode
configuration (``helixlib.estimate.decode_estimate``), as tables or JSON.

``estimate`` calls :func:`add_decode_args` from its ``add_args`` and :func:`run_decode` when
``--phase decode``. Options the estimate command may already define (``--strategy``,
``--tensor-parallel``, ``--pipeline-parallel``, ``--data-parallel``, ``--kv-shards``, ``--phase``) are
added only when missing, so either side can define them.
"""

from __future__ import annotations

import argparse

from helixlib.commands.common import print_result
from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.estimate.decode_estimate import DecodeConfig, DecodeEstimate, decode_estimate
from helixlib.estimate.hardware import load_cluster
from helixlib.plan.model import load_model
from helixlib.plan.names import DECODE_STRATEGIES, DecodeStrategy, KvLayout, StepPhase
from helixlib.views.decode_views import decode_report

DEFAULT_STRATEGY = DecodeStrategy.HELIX_KV


def _add(p: argparse.ArgumentParser, flag: str, **kw) -> None:
    """``p.add_argument(flag, ...)`` unless the command defines ``flag`` already."""
    try:
        p.add_argument(flag, **kw)
    except argparse.ArgumentError:
        pass


def add_decode_args(p: argparse.ArgumentParser) -> None:
    _add(p, "--phase", default=StepPhase.PREFILL, choices=tuple(StepPhase),
         help=f"{StepPhase.PREFILL} (default: the whole sequence) or {StepPhase.DECODE} (one token per "
              "sequence against a KV cache of --context tokens)")
    _add(p, "--strategy", default=None,
         help=f"decode: one of {', '.join(DECODE_STRATEGIES)} (default {DEFAULT_STRATEGY})")
    _add(p, "--tensor-parallel", default=None, help="decode: t, megatron-tp's width (or helix-kv's TP_A)")
    _add(p, "--kv-shards", default=None, help="decode, helix-kv: KVP, shards of the KV sequence (default 1)")
    _add(p, "--pipeline-parallel", default=None, help="decode: pipeline stages (default 1)")
    _add(p, "--data-parallel", default=None, help="decode: data-parallel replicas (default 1)")
    _add(p, "--context", default=None, help="decode: S, tokens in each sequence's KV cache (default: the seq_len)")
    _add(p, "--hop-b", action="store_true", help="decode: overlap the attention collective with attention (HOP-B)")
    _add(p, "--weight-dtype", default=None, help="decode: weights' dtype (default: the model's; fp8 allowed)")
    _add(p, "--kv-dtype", default=None, help="decode: KV cache's dtype (default: the model's; fp8 allowed)")
    _add(p, "--kv-cache", default=KvLayout.SEPARATE,
         help=f"decode: {KvLayout.SEPARATE} keys and values, or one {KvLayout.LATENT} per token (absorbed MLA)")


def _level(a: argparse.Namespace, name: str, default: int) -> int:
    value = getattr(a, name, None)
    return default if value is None else positive_int(name, value)


def config_from_args(a: argparse.Namespace, model) -> DecodeConfig:
    strategy = one_of("strategy", a.strategy or DEFAULT_STRATEGY, DECODE_STRATEGIES)
    if strategy == DecodeStrategy.MEGATRON_TP:
        split, second = _level(a, "tensor_parallel", 8), 1
    elif strategy == DecodeStrategy.HELIX:
        split, second = _level(a, "head_groups", 4), _level(a, "dim_segments", 4)
    else:
        tp = getattr(a, "tensor_parallel", None)
        split = _level(a, "tensor_parallel" if tp is not None else "head_groups", 4)
        second = _level(a, "kv_shards", 1)
    return DecodeConfig(strategy, split, second, _level(a, "context", model.seq_len), _level(a, "batch", model.batch),
                        _level(a, "pipeline_parallel", 1), _level(a, "data_parallel", 1), _level(a, "hop_b", 1) > 1,
                        a.weight_dtype, a.kv_dtype, one_of("kv_cache", a.kv_cache, tuple(KvLayout)))


def decode_from_args(a: argparse.Namespace) -> DecodeEstimate:
    model = load_model(a.model, seq_len=a.seq_len, batch=a.batch, layers=a.layers, dtype=a.dtype)
    cfg = config_from_args(a, model)
    if a.world_size is not None and positive_int("world_size", a.world_size) != cfg.gpus:
        raise HelixInputError("world_size", f"must equal the configuration's GPUs ({cfg.gpus})", a.world_size)
    return decode_estimate(model, load_cluster(a.hardware), cfg)


def run_decode(a: argparse.Namespace) -> int:
    est = decode_from_args(a)
    return print_result(a, est.to_dict, lambda: decode_report(est))
