"""Small integer helpers the plan, the estimator and the design space share."""

from __future__ import annotations


def divisors(n: int) -> list[int]:
    """Every positive divisor of ``n``, ascending (O(√n))."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def factor_pairs(n: int) -> list[tuple[int, int]]:
    """Every ``(a, n // a)``, ``a`` ascending: the two-level factorisations of ``n`` ranks."""
    return [(a, n // a) for a in divisors(n)]
