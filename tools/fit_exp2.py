"""Fit the 2^f polynomials of csrc/fastmath.h (Exp2Poly) and report their error.

    python tools/fit_exp2.py

2^f on |f| <= 1/2 is written 1 + f·q(f); q is fitted by least squares in the
relative error of 2^f at 200 Chebyshev nodes (close to the minimax fit), so the
constant stays exactly 1. The error is measured by evaluating the rounded
coefficients with Horner in the target precision against mpmath.
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 40


def fit(degree: int) -> np.ndarray:
    """Coefficients of 2^f ≈ 1 + f·q(f), highest power first (degree `degree`)."""
    f = np.cos(np.pi * (np.arange(200) + 0.5) / 200) / 2
    target = np.array([float((mp.power(2, mp.mpf(v)) - 1) / mp.mpf(v)) for v in f])
    weight = np.array([float(mp.mpf(v) / mp.power(2, mp.mpf(v))) for v in f])
    A = np.vander(f, degree, increasing=True) * weight[:, None]
    q, *_ = np.linalg.lstsq(A, target * weight, rcond=None)
    return np.concatenate([[1.0], q])[::-1]


def max_rel_error(c: np.ndarray, dtype) -> float:
    f = np.linspace(-0.5, 0.5, 4001).astype(dtype)
    p = np.full_like(f, dtype(c[0]))
    for a in c[1:]:
        p = p * f + dtype(a)
    exact = np.array([float(mp.power(2, mp.mpf(float(v)))) for v in f])
    return float(np.max(np.abs(p.astype(np.float64) - exact) / exact))


if __name__ == "__main__":
    for name, dtype, degree in (("float", np.float32, 6), ("double", np.float64, 12)):
        c = fit(degree)
        print(f"{name} (degree {degree}): max relative error {max_rel_error(c, dtype):.3g}")
        print("  " + ", ".join(repr(float(dtype(v))) for v in c))
