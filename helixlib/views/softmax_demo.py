"""Why a dim segment cannot take its own softmax: a small numeric demonstration.

Splitting the head dimension d splits the *contracted* dimension of Q·Kᵀ, so each
segment holds partial scores. Softmax is not linear: softmax(Σ_s S_s) ≠ concat over
segments of softmax(S_s)·V_s. Summing the partial scores first (the all-reduce) and
keeping the full head's 1/√d scale gives the exact answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SoftmaxDemo:
    """One head, L queries, d = m·d_s: the exact output and two partitioned attempts."""

    exact: torch.Tensor  # [L, d]
    per_segment_softmax: torch.Tensor  # [L, d] concat_s softmax(q_s k_sᵀ/√d_s) v_s  (wrong)
    summed_scores: torch.Tensor  # [L, d] concat_s softmax(Σ_t q_t k_tᵀ/√d) v_s      (right)
    per_segment_error: float  # max |wrong - exact|
    summed_error: float  # max |right - exact|
    wrong_scale_error: float  # summed scores but 1/√d_s instead of 1/√d


def segment_softmax_demo(L: int = 6, d: int = 8, m: int = 2, seed: int = 0) -> SoftmaxDemo:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(L, d, generator=gen, dtype=torch.float64) for _ in range(3))
    d_s = d // m
    seg = [slice(s * d_s, (s + 1) * d_s) for s in range(m)]
    exact = torch.softmax(q @ k.T / math.sqrt(d), -1) @ v
    wrong = torch.cat([torch.softmax(q[:, c] @ k[:, c].T / math.sqrt(d_s), -1) @ v[:, c] for c in seg], 1)
    partial = torch.stack([q[:, c] @ k[:, c].T for c in seg])  # [m, L, L], what each segment holds
    p = torch.softmax(partial.sum(0) / math.sqrt(d), -1)  # all-reduce, then softmax
    right = torch.cat([p @ v[:, c] for c in seg], 1)
    bad_scale = torch.cat([torch.softmax(partial.sum(0) / math.sqrt(d_s), -1) @ v[:, c] for c in seg], 1)
    err = lambda t: (t - exact).abs().max().item()
    return SoftmaxDemo(exact, wrong, right, err(wrong), err(right), err(bad_scale))
