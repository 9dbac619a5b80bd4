"""Decoding with the partitioned block: a KV cache of S positions per sequence (loaded from the
prompt's block inputs), then T steps of one new token each, verified against dense decoding.

Every rank loads its part of the cache (:mod:`helixlib.runtime.kvcache`), then each step runs the
block on the new tokens x_t [B, 1, D]: the head-dim split appends K and V on every rank (each its
columns); KV shards compute them on every shard of the group and append them on the shard that
owns the position (round-robin blocks: the cache grows across shards). Inputs are given, not fed
back (teacher forcing), so the dense reference is exact: decoding step by step equals the causal
block over prompt + new tokens at those positions — :func:`dense_decode_reference` computes it so,
with ``F.scaled_dot_product_attention``, not with a cache.

A step's collectives are those of its own Plan (``decode_plans``): the head-dim split's score
all-reduce grows by one key per step; the KV shards' All-to-Alls do not grow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from helixlib.plan import Plan
from helixlib.runtime.communicator import Communicator
from helixlib.runtime.dense import TORCH_DTYPES, dense_model_block, init_decode_input, init_weights
from helixlib.runtime.layer import HelixBlock
from helixlib.runtime.simulate import run_threads
from helixlib.runtime.trace import Trace
from helixlib.runtime.verify import Comparison, RankOutput, Reference, compare


@dataclass
class DecodeInputs:
    """One rank's block, the dense weights its cache is loaded with, the prompt and the new tokens."""

    block: HelixBlock
    weights: dict
    prompt: torch.Tensor  # [B, S, D]
    new: torch.Tensor  # [T, B, 1, D]

    def reload(self) -> None:
        """A fresh cache of the prompt (before a decode loop)."""
        self.block.attn.load_cache(self.prompt, self.weights)


def prepare_decode(plan: Plan, rank: int, comm: Communicator, steps: int, dtype: str = "fp64", seed: int = 0,
                   device: str | torch.device = "cpu") -> DecodeInputs:
    """Rank ``rank``'s block (weights sliced from the seeded dense init) with its cache loaded."""
    tdtype = TORCH_DTYPES[dtype]
    weights = {k: v.to(device) for k, v in init_weights(plan.model, seed, tdtype).items()}
    prompt, new = (t.to(device) for t in init_decode_input(plan.model, steps, seed, tdtype))
    inputs = DecodeInputs(HelixBlock(plan, rank, weights, comm), weights, prompt, new)
    inputs.reload()
    return inputs


def run_decode(inputs: DecodeInputs) -> RankOutput:
    """The decode loop: T steps from the loaded cache; outputs [B, T, D]. The trace tags each
    step's ops and collectives with the step; timings: forward_s the mean step, total_s all."""
    block, trace = inputs.block, inputs.block.trace
    device = inputs.prompt.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    outs = []
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        for t, x in enumerate(inputs.new):
            trace.step = t
            outs.append(block(x))
    sync()
    total = time.perf_counter() - t0
    trace.step = 0
    trace.timings.update(forward_s=total / len(outs), total_s=total)
    return RankOutput(block.rank, torch.cat(outs, dim=1))


def dense_decode_reference(plan: Plan, steps: int, seed: int = 0, dtype: str = "fp64") -> Reference:
    """Dense decoding of ``steps`` tokens after the prompt: the causal block over prompt + new tokens,
    at the new positions: [B, T, D]."""
    m = plan.model
    w = init_weights(m, seed, TORCH_DTYPES[dtype])
    prompt, new = init_decode_input(m, steps, seed, TORCH_DTYPES[dtype])
    x = torch.cat([prompt, *new], dim=1)  # [B, S + T, D]
    with torch.no_grad():
        out = dense_model_block(x, w, m.replace(causal=True))
    return Reference(out[:, m.seq_len:], {})


def decode_signatures(plans: list[Plan], rank: int) -> list[tuple]:
    """The collectives ``rank`` calls over a decode loop: each step's Plan in turn."""
    return [c.signature() for plan in plans for c in plan.collectives_for_rank(rank, "forward")]


def verify_decode(plans: list[Plan], outputs: list[RankOutput], seed: int, dtype: str) -> Comparison:
    """Every rank's outputs of every step against dense decoding in fp64 (and, for context, the
    dense decoding in ``dtype``)."""
    ref = dense_decode_reference(plans[0], len(plans), seed)
    dense_dtype = None if dtype == "fp64" else dense_decode_reference(plans[0], len(plans), seed, dtype)
    return compare(plans[0], outputs, ref, dtype, dense_dtype)


def simulate_decode(plans: list[Plan], dtype: str = "fp64", seed: int = 0,
                    timeout: float = 120.0) -> tuple[Comparison, list[Trace]]:
    """Every rank a thread of this process (``ThreadCommunicator``): the decode loop of
    ``len(plans)`` steps, compared with dense decoding. The first rank failure is re-raised."""
    plan = plans[0]
    traces = [Trace(r) for r in range(plan.world_size)]
    outputs = run_threads(plan, traces, lambda r, comm: run_decode(prepare_decode(plan, r, comm, len(plans), dtype,
                                                                                   seed)), timeout)
    return verify_decode(plans, outputs, seed, dtype), traces
