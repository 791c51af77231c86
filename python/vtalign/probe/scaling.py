"""Test-time scaling law of "Dynamic Reflections" (DESIGN.md §3.6):

    S(n_f, n_c) = S_inf - C_f · n_f^(-alpha) - C_c · n_c^(-beta)

fitted by bounded non-linear least squares over a table of (frames, captions,
score). The model is linear in (S_inf, C_f, C_c) once (alpha, beta) are fixed,
so the start point comes from a deterministic grid over (alpha, beta) with the
linear part solved exactly (variable projection); `scipy.optimize.least_squares`
(trust-region reflective, bounds C >= 0 and exponents in [1e-3, 10]) then
refines all five jointly. Standard errors come from the Jacobian at the
optimum: cov = s² (JᵀJ)⁺ with s² = SS_res / (n - 5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

PARAMS = ("S_inf", "C_f", "alpha", "C_c", "beta")
EXPONENT_BOUNDS = (1e-3, 10.0)
_GRID = np.geomspace(0.05, 8.0, 24)


def scaling_law(n_frames, n_captions, S_inf: float, C_f: float, alpha: float, C_c: float,
                beta: float) -> np.ndarray:
    """S(n_f, n_c) = S_inf - C_f n_f^-alpha - C_c n_c^-beta (broadcasting)."""
    nf = np.asarray(n_frames, dtype=np.float64)
    nc = np.asarray(n_captions, dtype=np.float64)
    return S_inf - C_f * nf ** (-alpha) - C_c * nc ** (-beta)


@dataclass
class ScalingFit:
    """A fitted scaling law.

    Attributes:
        params: {"S_inf", "C_f", "alpha", "C_c", "beta"} -> value.
        stderr: the same keys -> standard error (NaN when not identifiable).
        cov: `[5, 5]` parameter covariance in `PARAMS` order.
        r2: 1 - SS_res / SS_tot on the fitted points.
        rmse: sqrt(SS_res / n).
        n_points: number of (n_f, n_c, score) rows used.
        at_bound: names of parameters that ended on a bound (their errors are optimistic).
    """
    params: dict[str, float]
    stderr: dict[str, float]
    cov: np.ndarray
    r2: float
    rmse: float
    n_points: int
    at_bound: list[str] = field(default_factory=list)
    message: str = ""

    def predict(self, n_frames, n_captions) -> np.ndarray:
        """Scores at (n_frames, n_captions), broadcast together; extrapolation allowed.

        Raises ValueError for non-positive counts."""
        nf = np.asarray(n_frames, dtype=np.float64)
        nc = np.asarray(n_captions, dtype=np.float64)
        if not (np.all(np.isfinite(nf)) and np.all(nf > 0)):
            raise ValueError("n_frames must be finite and > 0")
        if not (np.all(np.isfinite(nc)) and np.all(nc > 0)):
            raise ValueError("n_captions must be finite and > 0")
        return scaling_law(nf, nc, **self.params)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"params": dict(self.params), "stderr": dict(self.stderr), "r2": self.r2, "rmse": self.rmse,
                "n_points": self.n_points, "at_bound": list(self.at_bound)}

    def summary(self) -> str:
        p, e = self.params, self.stderr
        terms = ", ".join(f"{k} = {p[k]:.4g} ± {e[k]:.2g}" for k in PARAMS)
        return f"S(n_f, n_c) = S_inf - C_f n_f^-alpha - C_c n_c^-beta: {terms}; R² = {self.r2:.4f}"


def _as_1d(name: str, v) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of numbers") from exc
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _linear_part(nf, nc, y, alpha, beta):
    """Best (S_inf, C_f, C_c) with C >= 0 for fixed exponents, and its SS_res."""
    X = np.stack([np.ones_like(nf), -nf ** (-alpha), -nc ** (-beta)], 1)
    best = None
    # Enumerate which C's are free (the active-set solution of this 3-variable
    # non-negative problem is one of these four).
    for cols in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        coef, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
        if np.any(coef[1:] < 0):
            continue
        full = np.zeros(3)
        full[list(cols)] = coef
        ss = float(np.sum((X @ full - y) ** 2))
        if best is None or ss < best[1]:
            best = (full, ss)
    return best


def fit_scaling_law(n_frames, n_captions, scores) -> ScalingFit:
    """Fit S(n_f, n_c) = S_inf - C_f n_f^-alpha - C_c n_c^-beta.

    Args:
        n_frames: `[n]` frames per row (> 0).
        n_captions: `[n]` captions per row (> 0).
        scores: `[n]` alignment scores.

    Needs n >= 6 rows with at least 3 distinct frame counts and 3 distinct
    caption counts (each power law has its own offset, scale and exponent to pin
    down) and scores that are not all equal.

    Returns:
        A `ScalingFit` (`.params`, `.stderr`, `.r2`, `.predict`).
    """
    nf = _as_1d("n_frames", n_frames)
    nc = _as_1d("n_captions", n_captions)
    y = _as_1d("scores", scores)
    if not (len(nf) == len(nc) == len(y)):
        raise ValueError(f"n_frames, n_captions and scores must have equal lengths, got "
                         f"{len(nf)}, {len(nc)} and {len(y)}")
    if len(y) < 6:
        raise ValueError(f"the scaling law has 5 parameters; need at least 6 points, got {len(y)}")
    if np.any(nf <= 0):
        raise ValueError("n_frames must all be > 0")
    if np.any(nc <= 0):
        raise ValueError("n_captions must all be > 0")
    for name, v in (("n_frames", nf), ("n_captions", nc)):
        if len(np.unique(v)) < 3:
            raise ValueError(f"degenerate grid: {name} has {len(np.unique(v))} distinct values; "
                             "need at least 3 to fit its power law")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        raise ValueError("scores are all equal; there is nothing to fit")

    start, best_ss = None, math.inf
    for a in _GRID:
        for b in _GRID:
            lin = _linear_part(nf, nc, y, a, b)
            if lin is not None and lin[1] < best_ss:
                best_ss = lin[1]
                start = np.array([lin[0][0], lin[0][1], a, lin[0][2], b])
    lo = np.array([-np.inf, 0.0, EXPONENT_BOUNDS[0], 0.0, EXPONENT_BOUNDS[0]])
    hi = np.array([np.inf, np.inf, EXPONENT_BOUNDS[1], np.inf, EXPONENT_BOUNDS[1]])

    def resid(p):
        return scaling_law(nf, nc, *p) - y

    def jac(p):
        s, cf, a, cc, b = p
        tf, tc = nf ** (-a), nc ** (-b)
        return np.stack([np.ones_like(nf), -tf, cf * tf * np.log(nf), -tc, cc * tc * np.log(nc)], 1)

    res = least_squares(resid, np.clip(start, lo, hi), jac=jac, bounds=(lo, hi), method="trf",
                        x_scale="jac", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=10_000)
    p = res.x
    ss_res = float(np.sum(res.fun ** 2))
    n = len(y)
    J = jac(p)
    s2 = ss_res / (n - len(PARAMS))
    cov = s2 * np.linalg.pinv(J.T @ J)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    if np.linalg.matrix_rank(J) < len(PARAMS):
        # A flat direction (e.g. C_f = 0 leaves alpha free): its error is undefined.
        err = np.full(len(PARAMS), np.nan)
    at_bound = [k for k, v, l, h in zip(PARAMS, p, lo, hi) if np.isclose(v, l) or np.isclose(v, h)]
    return ScalingFit(params={k: float(v) for k, v in zip(PARAMS, p)},
                      stderr={k: float(v) for k, v in zip(PARAMS, err)}, cov=cov,
                      r2=1.0 - ss_res / ss_tot, rmse=math.sqrt(ss_res / n), n_points=n,
                      at_bound=at_bound, message=str(res.message))
