"""Paired collectives as autograd Functions (Megatron ``tensor_parallel/mappings.py``).

Each mapping states its forward collective and the backward that the graph around
it needs (Shoeybi et al., "Megatron-LM", arXiv 1909.08053, §3: the f and g operators):

============================  ==================  ===================
mapping                       forward             backward
============================  ==================  ===================
copy_to_region      (f)       identity            all-reduce
reduce_from_region  (g)       all-reduce          identity
all_reduce_sum                all-reduce          all-reduce
all_gather_sum                all-gather          reduce-scatter
gather_from_region            all-gather          split (own chunk)
all_to_all                    all-to-all          all-to-all (transposed)
============================  ==================  ===================

``reduce_from_region`` is right when everything after it is replicated (the
row-parallel out-projection and FC2); ``all_reduce_sum`` when a rank-local op follows
(the partial scores feed ``P·V_s``, so each rank's dScores is partial).
``all_gather_sum`` likewise when rank-local ops consume the gathered tensor (their
gradients are partial and must be summed), ``gather_from_region`` when the consumer is
replicated. A group of one rank makes every mapping the identity. The table is the
same one the Plan uses (``helixlib.plan.names.MAPPINGS``); ``FUNCTIONS`` maps each of its
names to the function here, and a test runs every one against the table.
"""

from __future__ import annotations

import torch
from torch.autograd import Function

from helixlib.plan import Mapping
from helixlib.runtime.communicator import Communicator


class _CopyToRegion(Function):
    """f: forward identity; backward all-reduce of the input gradient over the group."""

    @staticmethod
    def forward(ctx, x, comm, group, name):
        ctx.args = comm, group, name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        comm, group, name = ctx.args
        return comm.all_reduce(g, group, f"{name}.backward", "backward"), None, None, None


class _ReduceFromRegion(Function):
    """g: forward all-reduce (sum) over the group; backward identity (what follows is replicated)."""

    @staticmethod
    def forward(ctx, x, comm, group, name):
        return comm.all_reduce(x, group, name, "forward")

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None


class _AllReduceSum(Function):
    """Forward all-reduce of partial sums; backward all-reduce (what follows is rank-local)."""

    @staticmethod
    def forward(ctx, x, comm, group, name):
        ctx.args = comm, group, name
        return comm.all_reduce(x, group, name, "forward")

    @staticmethod
    def backward(ctx, g):
        comm, group, name = ctx.args
        return comm.all_reduce(g, group, f"{name}.backward", "backward"), None, None, None


class _AllGatherSum(Function):
    """Forward all-gather along ``dim``; backward reduce-scatter (the gathered tensor feeds rank-local ops)."""

    @staticmethod
    def forward(ctx, x, comm, group, dim, name):
        ctx.args = comm, group, dim, name
        return comm.all_gather(x, group, dim, name, "forward")

    @staticmethod
    def backward(ctx, g):
        comm, group, dim, name = ctx.args
        return comm.reduce_scatter(g, group, dim, f"{name}.backward", "backward"), None, None, None, None


class _GatherFromRegion(Function):
    """Forward all-gather along ``dim``; backward keeps this rank's chunk (what follows is replicated)."""

    @staticmethod
    def forward(ctx, x, comm, group, dim, name):
        ctx.args = comm, group, dim
        return comm.all_gather(x, group, dim, name, "forward")

    @staticmethod
    def backward(ctx, g):
        comm, group, dim = ctx.args
        ranks = comm.ranks(group)
        return g.chunk(len(ranks), dim)[ranks.index(comm.rank)].contiguous(), None, None, None, None


class _AllToAll(Function):
    """Piece i of ``x`` [p, ...] to member i; backward sends each piece's gradient back to where
    it came from: the same equal-split all-to-all."""

    @staticmethod
    def forward(ctx, x, comm, group, name):
        ctx.args = comm, group, name
        return comm.all_to_all(x, group, name, "forward")

    @staticmethod
    def backward(ctx, g):
        comm, group, name = ctx.args
        return comm.all_to_all(g.contiguous(), group, f"{name}.backward", "backward"), None, None, None


def copy_to_region(x: torch.Tensor, comm: Communicator, group: str, name: str) -> torch.Tensor:
    return x if comm.size(group) == 1 else _CopyToRegion.apply(x, comm, group, name)


def reduce_from_region(x: torch.Tensor, comm: Communicator, group: str, name: str) -> torch.Tensor:
    return x if comm.size(group) == 1 else _ReduceFromRegion.apply(x, comm, group, name)


def all_reduce_sum(x: torch.Tensor, comm: Communicator, group: str, name: str) -> torch.Tensor:
    return x if comm.size(group) == 1 else _AllReduceSum.apply(x, comm, group, name)


def all_gather_sum(x: torch.Tensor, comm: Communicator, group: str, dim: int, name: str) -> torch.Tensor:
    return x if comm.size(group) == 1 else _AllGatherSum.apply(x, comm, group, dim, name)


def gather_from_region(x: torch.Tensor, comm: Communicator, group: str, dim: int, name: str) -> torch.Tensor:
    return x if comm.size(group) == 1 else _GatherFromRegion.apply(x, comm, group, dim, name)


def all_to_all(x: torch.Tensor, comm: Communicator, group: str, name: str) -> torch.Tensor:
    """x [p, ...] -> [p, ...]: piece i to (from) member i of ``group``."""
    return x if comm.size(group) == 1 else _AllToAll.apply(x, comm, group, name)


#: mapping name (``helixlib.plan.names.Mapping``) -> the function applying it (``grad_sync`` is
#: no autograd function: ``helixlib.runtime.verify.sync_gradients`` runs it after backward)
FUNCTIONS = {
    Mapping.COPY_TO_REGION: copy_to_region,
    Mapping.REDUCE_FROM_REGION: reduce_from_region,
    Mapping.ALL_REDUCE_SUM: all_reduce_sum,
    Mapping.ALL_GATHER_SUM: all_gather_sum,
    Mapping.GATHER_FROM_REGION: gather_from_region,
    Mapping.ALL_TO_ALL: all_to_all,
}
