"""Time of one operator on one device: a roofline with explicit efficiency knobs.

    t = max(FLOPs / (peak · efficiency),  bytes / (bandwidth · memory_efficiency)) + launch

* matmuls run on the tensor cores at ``peak_flops(dtype) · e(M, K, N)``: the device's GEMM
  curve fitted to published GEMM timings (``helixlib.estimate.kernels``; a batched GEMM's batch
  counts into M, and the curve's own per-call cost replaces the launch overhead), or — when the
  device lists measured ``(M, K, N, FLOP/s)`` points for the dtype (``calibrate``) — the
  throughput interpolated between the measured shapes (log FLOP/s weighted by inverse distance⁴
  in log (M, K, N): a measured shape gets its own figure, others mostly their nearest
  neighbours'), or else
  ``e = matmul_efficiency · f(M)·f(K)·f(N)`` with ``f(x) = x / (x + matmul_half_dim)``;
* element-wise ops (LayerNorm, softmax, GELU, adds) run on the vector units, at
  ``memory_bandwidth · memory_efficiency`` — or, when the device lists measured
  ``(bytes, B/s)`` points for the op's kind and dtype, at the bandwidth interpolated
  (log–log) between the measured sizes (constant beyond them): one figure cannot hold
  both an op that stays in cache and one that streams from memory;
* a fused (flash) attention kernel runs at ``peak ·`` the device's flash fraction (forward or
  backward, with or without causal skipping) and never writes the score matrix to memory.

Every function takes numpy arrays or plain numbers (the design-space sweep evaluates
10^5 configurations at once) and returns the same.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from helixlib.estimate.hardware import Device


class OpTime(NamedTuple):
    compute_s: object  # the FLOP side of the roofline
    memory_s: object  # the bytes side
    time_s: object  # max of the two, plus the launch overhead
    efficiency: object  # fraction of the dense peak the FLOP side assumes


def _shape_factor(x, half: float):
    x = np.asarray(x, dtype=float)
    return x / (x + half)


def gemm_efficiency(device: Device, dtype: str, M, K, N, batch=1):
    """Fraction of the dense peak a ``batch`` × [M,K]·[K,N] GEMM reaches."""
    curve = device.gemm.get(dtype)
    if curve is not None:
        return curve.efficiency(np.asarray(batch, dtype=float) * M, K, N)
    measured = device.matmul_measured.get(dtype)
    if not measured:
        return device.matmul_efficiency * _shape_factor(M, device.matmul_half_dim) * \
            _shape_factor(K, device.matmul_half_dim) * _shape_factor(N, device.matmul_half_dim)
    table = np.asarray(measured, dtype=float)  # rows: M, K, N, FLOP/s
    query = np.log(np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (M, K, N))), axis=-1))
    dist2 = ((query[..., None, :] - np.log(table[:, :3])) ** 2).sum(axis=-1)
    weight = 1.0 / np.maximum(dist2, 1e-12) ** 2  # inverse distance⁴ in log-shape space: a measured shape is exact
    log_flops = (weight * np.log(table[:, 3])).sum(axis=-1) / weight.sum(axis=-1)
    return np.exp(log_flops) / device.peak_flops(dtype)


def matmul_time(device: Device, dtype: str, flops, nbytes, M, K, N, batch=1) -> OpTime:
    eff = gemm_efficiency(device, dtype, M, K, N, batch)
    curve = device.gemm.get(dtype)
    launch = device.launch_overhead_s if curve is None else curve.launch_s
    return _roofline(device, flops / (device.peak_flops(dtype) * eff), nbytes, eff, launch=launch)


def elementwise_bandwidth(device: Device, dtype: str, kind: str | None, nbytes):
    """Bytes/s an element-wise op of ``kind`` moving ``nbytes`` reaches (see the module docstring)."""
    table = device.elementwise_measured.get(dtype, {}).get(kind)
    if not table:
        return device.memory_bandwidth * device.memory_efficiency
    size, bw = np.log(np.asarray(sorted(table), dtype=float)).T
    return np.exp(np.interp(np.log(np.asarray(nbytes, dtype=float)), size, bw))


def elementwise_time(device: Device, dtype: str, flops, nbytes, kind: str | None = None) -> OpTime:
    eff = device.vector_flops / device.peak_flops(dtype)
    return _roofline(device, np.asarray(flops, dtype=float) / device.vector_flops, nbytes, eff,
                     elementwise_bandwidth(device, dtype, kind, nbytes))


def flash_time(device: Device, dtype: str, flops, nbytes, causal: bool = False, backward: bool = False) -> OpTime:
    """``flops`` are what the kernel runs (halved already when it skips the masked half)."""
    eff = device.flash_fraction(causal, backward)
    return _roofline(device, np.asarray(flops, dtype=float) / (device.peak_flops(dtype) * eff), nbytes, eff)


def _roofline(device: Device, compute_s, nbytes, eff, bandwidth=None, launch=None) -> OpTime:
    if bandwidth is None:
        bandwidth = device.memory_bandwidth * device.memory_efficiency
    memory_s = np.asarray(nbytes, dtype=float) / bandwidth
    launch = device.launch_overhead_s if launch is None else launch
    return OpTime(compute_s, memory_s, np.maximum(compute_s, memory_s) + launch, eff)
