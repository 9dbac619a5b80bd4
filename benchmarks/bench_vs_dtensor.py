"""Benchmark (b): helixlib's block with n=16, m=1 (pure head split, Megatron TP) against the
same block parallelised with PyTorch's own ``parallelize_module`` (ColwiseParallel for
Q, K, V and FC1, RowwiseParallel for the out-projection and FC2, on a 1-D mesh of 16),
side by side in the same 16 processes, forward+backward.

    .venv/bin/python benchmarks/bench_vs_dtensor.py [--model helix-tiny] [--repeats 20]
"""

import argparse
import functools

import torch
import torch.nn.functional as F
from _machine import machine
from torch import nn

from helixlib.runtime.session import rank_session
from helixlib.runtime.steps import timed_steps


class TorchBlock(nn.Module):
    """The dense pre-LN block written the torchtitan way (heads inferred from the local width)."""

    def __init__(self, w: dict, head_dim: int, causal: bool):
        super().__init__()
        D, Fh = w["W1"].shape
        self.head_dim, self.causal = head_dim, causal
        self.ln1, self.ln2 = nn.LayerNorm(D, dtype=w["Wq"].dtype), nn.LayerNorm(D, dtype=w["Wq"].dtype)
        lin = lambda W, b: nn.Linear(W.shape[0], W.shape[1], dtype=W.dtype)
        self.q, self.k, self.v, self.o = (lin(w[f"W{t}"], None) for t in "qkvo")
        self.fc1, self.fc2 = lin(w["W1"], None), lin(w["W2"], None)
        with torch.no_grad():
            for name, mod in (("q", self.q), ("k", self.k), ("v", self.v), ("o", self.o), ("1", self.fc1),
                              ("2", self.fc2)):
                mod.weight.copy_(w[f"W{name}"].T)
                mod.bias.copy_(w[f"b{name}"])
            for ln in ("ln1", "ln2"):
                getattr(self, ln).weight.copy_(w[f"{ln}.weight"])
                getattr(self, ln).bias.copy_(w[f"{ln}.bias"])

    def forward(self, x):
        B, L, _ = x.shape
        h = self.ln1(x)
        q, k, v = (p(h).view(B, L, -1, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal).transpose(1, 2).reshape(B, L, -1)
        x1 = x + self.o(o)
        return x1 + self.fc2(F.gelu(self.fc1(self.ln2(x1))))


def rank_fn(spec, rank, world, local_rank=0, store_port=None, progress=None, repeats=20):
    with rank_session(spec, rank, world, store_port=store_port) as s:
        return _compare(s, s.prepare(), spec.model, world, repeats)


def _compare(s, helix, m, world, repeats):
    """Time helixlib's block (``helix``) and parallelize_module's TP block in the same ranks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from helixlib.runtime.dense import TORCH_DTYPES, init_weights
    from helixlib.runtime.verify import run_step

    tp = TorchBlock(init_weights(m, s.spec.seed, TORCH_DTYPES[m.dtype]), m.head_dim, m.causal)
    parallelize_module(tp, init_device_mesh("cpu", (world,)), {
        "q": ColwiseParallel(), "k": ColwiseParallel(), "v": ColwiseParallel(), "o": RowwiseParallel(),
        "fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    x, gy = helix.x, helix.grad_out

    def tp_step():
        tp.zero_grad(set_to_none=True)
        xr = x.detach().requires_grad_(True)
        out = tp(xr)
        out.backward(gy)
        return out

    # both blocks compute the same function: check before timing them
    diff = (tp_step().detach() - run_step(helix, True).out).abs().max().item()
    result = timed_steps({"helixlib": lambda: run_step(helix, True), "parallelize_module": tp_step},
                         repeats)
    if result is not None:
        result["max_abs_diff"] = diff
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="helix-tiny")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    from helixlib import Partition, load_model
    from helixlib.runtime.launch import launch_local
    from helixlib.runtime.run import RunSpec

    print(machine())
    spec = RunSpec(load_model(a.model), Partition(16, 1))
    r = launch_local(spec, rank_fn=functools.partial(rank_fn, repeats=a.repeats))
    h, t = r["helixlib"], r["parallelize_module"]
    print(f"{a.model}, 16 ranks (gloo, 1 thread each), forward+backward, median of {a.repeats} steps "
          f"(a step = slowest rank); outputs agree to {r['max_abs_diff']:.1e}")
    print(f"helixlib n=16 m=1        {h * 1e3:8.1f} ms")
    print(f"parallelize_module (TP)  {t * 1e3:8.1f} ms")
    print(f"ratio helixlib / parallelize_module: {h / t:.2f}")


if __name__ == "__main__":
    main()
