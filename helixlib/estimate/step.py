"""A whole training step on a cluster: tensor, pipeline and data parallelism around one block.

``estimate_step(model, Parallel(...), cluster)`` prices, for one rank of each pipeline stage:

* the block (``helixlib.estimate.megatron`` for Megatron TP / TP+SP; the helix, Ulysses and ring
  programs of ``helixlib.estimate.strategies``) for one micro-batch, forward and backward with its
  recomputation (``none | selective | full``), through the roofline, the collective model and the
  overlap windows of ``helixlib.estimate.timing``;
* the first stage's embedding and the last stage's logits and loss (``helixlib.estimate.model_ends``);
* pipeline point-to-point transfers: per micro-batch and model chunk, the activations forward and
  their gradient backward (``b·s·h`` elements, ``/t`` when sequence parallelism or Megatron's
  scatter-gather splits them over the tensor-parallel ranks), on the critical path unless
  ``p2p_overlap``;
* the pipeline schedule: with ``m`` micro-batches, per-device times ``t_i`` (one micro-batch,
  forward and backward) and ``v`` model chunks per device (interleaved 1F1B; ``v = 1``: 1F1B),
  ``m · max t_i + (Σ t_i − max t_i)/v`` — the bubble of Narayanan et al. 2021 (arXiv 2104.04473),
  ``(p − 1)/v`` stage times for equal stages;
* data parallelism: the gradients all-reduced over ``d`` ranks (``zero ≥ 1``: reduce-scattered, and
  the updated 16-bit weights all-gathered), after the last micro-batch unless ``dp_overlap`` hides
  them behind its backward (and the weights' gather behind the next forward); the tied embedding's
  gradient all-reduced between the first and last stage;
* the optimizer: mixed-precision Adam over the parameters a rank owns (``/d`` with ``zero ≥ 1``),
  ``OPTIMIZER_BYTES`` per parameter through memory.

Ranks are placed Megatron's way: tensor-parallel ranks consecutive, then data-parallel, then
pipeline (``node = rank // gpus_per_node``). Not modelled: data loading, logging, the optimizer's
gradient-norm all-reduce, stragglers, and the slowdown of a GEMM that shares the GPU with an
overlapped collective (see BENCHMARKS.md for what that costs against published runs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.estimate.alphabeta import collective_time
from helixlib.estimate.hardware import Cluster
from helixlib.estimate.megatron import Block, megatron_program
from helixlib.estimate.memory import MemoryBreakdown
from helixlib.estimate.model_ends import embedding_program, head_program
from helixlib.estimate.roofline import elementwise_time
from helixlib.estimate.step_memory import training_memory
from helixlib.estimate.strategies import Shapes, helix_program, ring_program, ulysses_program, world_nodes
from helixlib.estimate.timing import Timing, program_timing
from helixlib.estimate.workload import Program, fuse_attention
from helixlib.plan.model import ModelConfig
from helixlib.plan.names import CollectiveKind, OpKind, QkMode, Recompute, Strategy

#: bytes one parameter's optimizer step moves (fp32 main gradient and parameter, Adam m and v): unscale and
#: check the gradient (read + write 8), its norm (read 4), Adam (read p, g, m, v 16, write p, m, v 12), the
#: 16-bit copy of the parameter (read 4, write 2) — Megatron's mixed-precision optimizer
OPTIMIZER_BYTES = 46
STRATEGIES = tuple(Strategy)


@dataclass(frozen=True)
class Parallel:
    """How a training step is split: tensor (t), pipeline (p) and data (d) parallel degrees, micro- and
    global batch (sequences), interleaved chunks (v), recomputation, and what overlaps."""

    strategy: str = Strategy.MEGATRON_SP
    tensor: int = 1
    pipeline: int = 1
    data: int = 1
    micro_batch: int = 1
    global_batch: int | None = None  # None: one micro-batch per data-parallel rank
    virtual: int = 1
    recompute: str = Recompute.NONE
    flash: bool = False
    zero: int = 0  # 0: none; 1: optimizer states sharded over d (Megatron's distributed optimizer); 2: and gradients
    dp_overlap: bool = False
    tp_overlap: bool = False
    p2p_overlap: bool = False
    head_groups: int | None = None  # helix: n (m = t / n); None: n = t (head parallelism)
    qk_mode: str = QkMode.REDUCE_SCORES

    @property
    def world_size(self) -> int:
        return self.tensor * self.pipeline * self.data

    @property
    def batch(self) -> int:
        return self.micro_batch * self.data if self.global_batch is None else self.global_batch

    @property
    def micro_batches(self) -> int:
        """Micro-batches each pipeline runs per step."""
        return self.batch // (self.data * self.micro_batch)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, str) else v) for k, v in vars(self).items()} | {
            "world_size": self.world_size, "global_batch": self.batch, "micro_batches": self.micro_batches}


def check(model: ModelConfig, par: Parallel, cluster: Cluster) -> Parallel:
    """``par`` with its degrees checked against the model and the cluster (one error naming the field)."""
    one_of("strategy", par.strategy, tuple(map(str, STRATEGIES)))
    one_of("recompute", par.recompute, tuple(map(str, Recompute)))
    t, p, d, b, v = (positive_int(f, getattr(par, f)) for f in ("tensor", "pipeline", "data", "micro_batch", "virtual"))
    if par.zero not in (0, 1, 2):
        raise HelixInputError("zero", "must be 0, 1 or 2 (ZeRO-3 is the ulysses and ring strategies' own)", par.zero)
    if par.batch % (d * b):
        raise HelixInputError("global_batch", f"must be a multiple of micro_batch x data ({b * d})", par.batch)
    if model.layers % (p * v):
        raise HelixInputError("pipeline", f"pipeline x virtual must divide the layers ({model.layers})", p * v)
    if v > 1 and par.micro_batches % p:
        raise HelixInputError("global_batch", f"interleaving needs micro-batches ({par.micro_batches}) a multiple "
                                              f"of the pipeline size ({p})", par.batch)
    gpn = cluster.gpus_per_node
    if par.world_size > gpn and par.world_size % gpn:
        raise HelixInputError("world_size", f"must fill whole nodes of {gpn} GPUs", par.world_size)
    heads_split = {Strategy.MEGATRON_TP, Strategy.MEGATRON_SP, Strategy.ULYSSES}
    if par.strategy in heads_split and (model.heads % t or model.kv_heads % t):
        raise HelixInputError("tensor_parallel", f"must divide the heads ({model.heads}, {model.kv_heads} K/V)", t)
    if model.mlp_hidden % t:
        raise HelixInputError("tensor_parallel", f"must divide the MLP width ({model.mlp_hidden})", t)
    if par.strategy in (Strategy.MEGATRON_SP, Strategy.ULYSSES, Strategy.RING) and (b * model.seq_len) % t:
        raise HelixInputError("tensor_parallel", "must divide the tokens of a micro-batch", t)
    if par.strategy in (Strategy.HELIX, Strategy.ULYSSES, Strategy.RING):
        model.require_standard_attention(f"the {par.strategy} strategy")
    if par.strategy == Strategy.HELIX:
        n = t if par.head_groups is None else positive_int("head_groups", par.head_groups)
        if t % n or model.heads % n or model.head_dim % (t // n):
            raise HelixInputError("head_groups", f"n must divide t ({t}) and the heads, t/n the head dim", n)
    return replace(par, tensor=t, pipeline=p, data=d, micro_batch=b, virtual=v)


def block_program(model: ModelConfig, par: Parallel, cluster: Cluster, training: bool) -> Program:
    """One rank's program of one block for one micro-batch under ``par.strategy``."""
    t, gpn, beta = par.tensor, cluster.gpus_per_node, model.dtype_bytes
    n = t if par.head_groups is None else par.head_groups
    s = Shapes(par.micro_batch, model.seq_len, model.hidden, model.heads, model.mlp_hidden, t, n, t // n)
    if par.strategy in (Strategy.MEGATRON_TP, Strategy.MEGATRON_SP):
        block = Block(sp=par.strategy == Strategy.MEGATRON_SP, dropout=model.dropout if training else 0.0,
                      flash=par.flash, causal=model.causal, tp_overlap=par.tp_overlap, kv_heads=model.kv_heads,
                      swiglu=model.mlp == "swiglu")
        return megatron_program(s, gpn, beta, block)
    if par.strategy == Strategy.RING:
        return ring_program(s, gpn, beta)
    prog = helix_program(s, gpn, beta, par.qk_mode == QkMode.GATHER_QK) if par.strategy == Strategy.HELIX \
        else ulysses_program(s, gpn, beta)
    return fuse_attention(prog, model.seq_len, causal=model.causal) if par.flash else prog


def placement(par: Parallel, gpus_per_node: int) -> dict[str, int]:
    """Nodes spanned by a tensor-parallel group, a data-parallel group and a pipeline neighbour pair."""
    t, d = par.tensor, par.data
    return {"tensor": int(world_nodes(t, gpus_per_node)),
            "data": d if t >= gpus_per_node else min(d, -(-d * t // gpus_per_node)),
            "pipeline": 2 if t * d >= gpus_per_node else 1}


@dataclass(frozen=True)
class StepEstimate:
    model: ModelConfig
    cluster: Cluster
    parallel: Parallel
    training: bool
    program: Program  # one block, one micro-batch
    block: Timing
    embedding: Timing | None
    head: Timing | None
    stage_s: tuple[float, ...]  # per pipeline stage: one micro-batch, forward (+ backward), p2p included
    p2p_s: float  # per micro-batch on a stage, on the critical path
    pipeline_s: float
    dp_s: float  # the gradient reduction (and the weights' gather), all of it
    dp_exposed_s: float
    embedding_sync_s: float
    optimizer_s: float
    memory: MemoryBreakdown  # the fullest stage
    model_flops: float
    hardware_flops: float

    @property
    def time_s(self) -> float:
        return self.pipeline_s + self.dp_exposed_s + self.embedding_sync_s + self.optimizer_s

    @property
    def bubble_s(self) -> float:
        return self.pipeline_s - self.parallel.micro_batches * max(self.stage_s)

    def per_gpu(self, flops: float) -> float:
        return flops / (self.time_s * self.parallel.world_size)

    @property
    def mfu(self) -> float:
        return self.per_gpu(self.model_flops) / self.cluster.device.peak_flops(self.model.dtype)

    @property
    def hfu(self) -> float:
        return self.per_gpu(self.hardware_flops) / self.cluster.device.peak_flops(self.model.dtype)


def _timing(prog: Program, cluster: Cluster, dtype: str, training: bool, recompute=Recompute.NONE) -> Timing:
    return program_timing(prog, cluster, dtype, training, recompute if training else Recompute.NONE)


def estimate_step(model: ModelConfig, par: Parallel, cluster: Cluster, training: bool = True) -> StepEstimate:
    """Time, FLOPs and memory of one step (see the module docstring)."""
    from helixlib.estimate.flops import hardware_flops, model_flops

    par = check(model, par, cluster)
    t, p, d, v, gpn, beta = par.tensor, par.pipeline, par.data, par.virtual, cluster.gpus_per_node, model.dtype_bytes
    nodes = placement(par, gpn)
    prog = block_program(model, par, cluster, training)
    block = _timing(prog, cluster, model.dtype, training, par.recompute)
    s = Shapes(par.micro_batch, model.seq_len, model.hidden, model.heads, model.mlp_hidden, t)
    sp = par.strategy in (Strategy.MEGATRON_SP, Strategy.ULYSSES, Strategy.RING)
    ends = model.vocab is not None
    emb = _timing(embedding_program(s, model.vocab, gpn, beta, sp, model.dropout if training else 0.0), cluster,
                  model.dtype, training) if ends else None
    head = _timing(head_program(s, model.vocab, gpn, beta, sp), cluster, model.dtype, training) if ends else None
    whole = lambda tm: 0.0 if tm is None else float(tm.dataflow_s)
    act = s.tokens * model.hidden * beta / t  # split over the TP ranks (sequence parallel or scatter-gather)
    hop = float(collective_time(cluster, CollectiveKind.SEND_RECV, act, 2, nodes["pipeline"]).time_s)
    p2p = 0.0 if p == 1 or par.p2p_overlap else (2 if training else 1) * v * hop
    layers = model.layers // p
    stage = [layers * float(block.dataflow_s) + p2p for _ in range(p)]
    stage[0] += whole(emb)
    stage[-1] += whole(head)
    m = par.micro_batches
    pipeline = m * max(stage) + (sum(stage) - max(stage)) / v
    table = model.vocab // t * model.hidden if ends else 0  # the embedding's slice, tied to the logits
    per_stage_params = [layers * float(prog.weight_params) + (table if i in (0, p - 1) else 0) for i in range(p)]
    dp = dp_exposed = sync = opt = 0.0
    if training:
        params = max(per_stage_params)
        grad_bytes = 4 if model.dtype == "bf16" else beta
        if d > 1:
            if par.zero == 0:
                dp = reduce = float(collective_time(cluster, CollectiveKind.ALL_REDUCE, params * grad_bytes, d,
                                                    nodes["data"]).time_s)
                gather = 0.0
            else:
                reduce = float(collective_time(cluster, CollectiveKind.REDUCE_SCATTER, params * grad_bytes, d,
                                               nodes["data"]).time_s)
                gather = float(collective_time(cluster, CollectiveKind.ALL_GATHER, params * beta, d,
                                               nodes["data"]).time_s)
                dp = reduce + gather
            if par.dp_overlap:
                dp_exposed = max(0.0, reduce - layers * float(block.backward_s)) + \
                    max(0.0, gather - layers * float(block.forward_s))
            else:
                dp_exposed = dp
        if ends and p > 1:
            sync = float(collective_time(cluster, CollectiveKind.ALL_REDUCE, table * grad_bytes, 2, 2).time_s)
        owned = params / (d if par.zero >= 1 else 1)
        opt = float(elementwise_time(cluster.device, model.dtype, 0.0, owned * OPTIMIZER_BYTES,
                                     OpKind.OPTIMIZER).time_s)
    memory = training_memory(model, par, cluster, prog, per_stage_params, training,
                             emb_prog=None if not ends else embedding_program(s, model.vocab, gpn, beta, sp),
                             head_prog=None if not ends else head_program(s, model.vocab, gpn, beta, sp))
    causal_skip = par.flash and model.causal and par.strategy != Strategy.RING  # the ring kernel counts the square
    return StepEstimate(model, cluster, par, training, prog, block, emb, head, tuple(stage), p2p, pipeline, dp,
                        dp_exposed, sync, opt, memory,
                        model_flops(model, par.batch) if training else model_flops(model, par.batch) / 3,
                        hardware_flops(model, par.batch, par.recompute if training else Recompute.NONE, causal_skip)
                        / (1 if training else 3))
