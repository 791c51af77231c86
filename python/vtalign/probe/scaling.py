"""Test-time scaling law of "Dynamic Reflections" (docs/design.md §3.6):

    S(n_f, n_c) = S_inf - C_f · n_f^(-alpha) - C_c · n_c^(-beta)

fitted by bounded non-linear least squares over a table of (frames, captions,
score). The model is linear in (S_inf, C_f, C_c) once (alpha, beta) are fixed,
the fit is a variable projection: a deterministic grid over (alpha, beta) with
the linear part solved exactly (C >= 0) gives the start, `scipy.optimize.least_squares`
(trust-region reflective, exponents in [1e-3, 10]) minimises over (alpha, beta)
alone with the linear part re-solved at every step, a short joint refinement of all
five follows, and the linear part is solved once more at the final exponents. Standard
errors come from the Jacobian at the optimum: cov = s² (JᵀJ)⁺ with s² = SS_res / (n - 5).
"""
from __future__ import annotations

import csv
import math
import os
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
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D array of numbers, got {type(v).__name__} {v!r}")
    try:
        raw = np.asarray(v)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a 1-D array of numbers ({exc})") from None
    if raw.dtype.kind not in "biuf":  # text, objects, complex, dates: name the first offending entry
        try:  # the entries as given (a mixed list would otherwise be all text)
            items = np.asarray(v, dtype=object).reshape(-1).tolist()
        except (TypeError, ValueError):
            items = raw.reshape(-1).tolist()
        for i, x in enumerate(items):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
                at = f"{name}[{i}]" if raw.ndim == 1 else f"{name} (flat index {i})"
                raise TypeError(f"{name} must hold numbers; {at} is {type(x).__name__} {x!r}")
        raw = raw.astype(np.float64)
    if raw.dtype.kind == "b":
        raise TypeError(f"{name} must hold numbers, got booleans")
    a = raw.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name} contains NaN or Inf: {name}[{bad[0]}] = {a[bad[0]]}")
    return a


SCALING_COLUMNS = ("n_frames", "n_captions", "score")


def read_scaling_table(path, *, name: str = "table") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_frames, n_captions, scores) from a CSV file whose header row names the
    columns n_frames, n_captions and score (others are ignored).

    Every problem is a ValueError naming `name`, the file and, for a bad cell, its
    data row (1-based), line, column and text: an empty file, a missing column, a
    row with the wrong number of cells, a cell that is not a finite number, a
    count that is not > 0, no data rows.
    """
    path = os.fspath(path)
    where = f"{name}: {path}"
    if os.path.isdir(path):
        raise ValueError(f"{where} is a folder, not a CSV file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append((reader.line_num, [c.strip() for c in row]))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not a text CSV file (byte {exc.start} is not UTF-8)") from None
    except csv.Error as exc:
        raise ValueError(f"{where}: not a CSV table: {exc}") from None
    need = ", ".join(SCALING_COLUMNS)
    if not rows:
        raise ValueError(f"{where} is empty; it needs a header row ({need}) and one row per measurement")
    hline, header = rows[0]
    missing = [c for c in SCALING_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{where}: the header row (line {hline}) needs the columns {need}; missing "
                         f"{', '.join(missing)} (found {', '.join(header)})")
    twice = [c for c in SCALING_COLUMNS if header.count(c) > 1]
    if twice:
        raise ValueError(f"{where}: the header row (line {hline}) names {', '.join(twice)} more than once")
    cols = {c: header.index(c) for c in SCALING_COLUMNS}
    out: dict[str, list[float]] = {c: [] for c in SCALING_COLUMNS}
    for r, (line, row) in enumerate(rows[1:], 1):
        if len(row) != len(header):
            raise ValueError(f"{where}, row {r} (line {line}) has {len(row)} cells; the header has {len(header)}")
        for c, j in cols.items():
            text = row[j]
            cell = f"{where}, row {r} (line {line}), column {c!r}"
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"{cell}: {text!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"{cell}: {text!r} is not a finite number")
            if c != "score" and v <= 0:
                raise ValueError(f"{cell}: {text!r} must be > 0")
            out[c].append(v)
    if not out["score"]:
        raise ValueError(f"{where} has a header row but no data rows")
    return tuple(np.array(out[c], dtype=np.float64) for c in SCALING_COLUMNS)


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


def _grid_start(nf, nc, y) -> np.ndarray:
    """(S_inf, C_f, alpha, C_c, beta) of the best exponent pair of `_GRID` x `_GRID`, each
    with its best linear part (C >= 0): `_linear_part` for all pairs at once."""
    a, b = (g.ravel() for g in np.meshgrid(_GRID, _GRID, indexing="ij"))
    X = np.stack([np.ones((len(a), len(nf))), -nf[None] ** -a[:, None], -nc[None] ** -b[:, None]], 2)
    best_ss, best = np.full(len(a), np.inf), np.zeros((len(a), 3))
    for cols in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        Xs = X[:, :, cols]
        coef = np.linalg.pinv(Xs) @ y  # [G, m]: the least-squares solution of each pair
        ss = np.sum((np.einsum("gnm,gm->gn", Xs, coef) - y) ** 2, axis=1)
        ok = np.all(coef[:, 1:] >= 0, axis=1) & (ss < best_ss)
        best_ss[ok] = ss[ok]
        best[np.ix_(ok, cols)] = coef[ok]
        best[np.ix_(ok, [c for c in range(3) if c not in cols])] = 0.0
    g = int(np.argmin(best_ss))
    return np.array([best[g, 0], best[g, 1], a[g], best[g, 2], b[g]])


def fit_scaling_law(n_frames, n_captions, scores) -> ScalingFit:
    """Fit S(n_f, n_c) = S_inf - C_f n_f^-alpha - C_c n_c^-beta.

    Args:
        n_frames: `[n]` frames per row (> 0).
        n_captions: `[n]` captions per row (> 0).
        scores: `[n]` alignment scores.

    Needs n >= 6 rows at >= 6 distinct (n_frames, n_captions) points (5
    parameters and one degree of freedom for the residual variance), at least 3
    distinct frame counts and 3 distinct caption counts (each power law has its
    own offset, scale and exponent to pin down), and scores that vary: a table
    whose scores are equal to within rounding (max - min <= 16 ulp of their
    size) is refused, because R² = 1 - SS_res / SS_tot has SS_tot = 0 there.

    Returns:
        A `ScalingFit` (`.params`, `.stderr`, `.r2`, `.predict`). R² follows its
        definition (SS_tot > 0 is guaranteed by the check above). A standard error
        is NaN exactly for the parameters the data cannot pin down: those with a
        component along a flat direction of the Jacobian at the optimum (e.g. alpha
        when C_f = 0); the others come from s² (JᵀJ)⁺ with s² = SS_res / (n - 5).
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
    points = len({(a, b) for a, b in zip(nf.tolist(), nc.tolist())})
    if points < len(PARAMS) + 1:
        raise ValueError(f"degenerate grid: {points} distinct (n_frames, n_captions) points; the scaling law has "
                         f"{len(PARAMS)} parameters, so it needs at least {len(PARAMS) + 1}")
    spread = float(y.max() - y.min())
    if spread <= 16 * np.finfo(np.float64).eps * float(np.abs(y).max()):
        raise ValueError(f"scores are all equal (max - min = {spread:.3g}, within rounding); R² is undefined "
                         "and there is nothing to fit")
    # The fit runs on z = (y - mean) / spread and maps back exactly (S_inf and the C's
    # are affine in the scores, the exponents do not change), so neither the fit nor
    # R² depends on the scores' scale: no underflow or overflow at 1e-200 or 1e200.
    y_mean = float(y.mean())
    y_raw, y = y, (y - y_mean) / spread
    ss_tot = float(np.sum((y - y.mean()) ** 2))

    start = _grid_start(nf, nc, y)
    lo = np.array([-np.inf, 0.0, EXPONENT_BOUNDS[0], 0.0, EXPONENT_BOUNDS[0]])
    hi = np.array([np.inf, np.inf, EXPONENT_BOUNDS[1], np.inf, EXPONENT_BOUNDS[1]])

    def resid(p):
        return scaling_law(nf, nc, *p) - y

    def jac(p):
        s, cf, a, cc, b = p
        tf, tc = nf ** (-a), nc ** (-b)
        return np.stack([np.ones_like(nf), -tf, cf * tf * np.log(nf), -tc, cc * tc * np.log(nc)], 1)

    # Variable projection first: S_inf, C_f and C_c are linear given the exponents, so
    # the 2-parameter problem in (alpha, beta), each step solving the linear part exactly,
    # finds the optimum in a few dozen evaluations where the 5-parameter problem crawled
    # along its valleys (C_c n_c^-beta with beta -> 0 trades against S_inf) for thousands.
    def vp_resid(e):
        full, _ = _linear_part(nf, nc, y, e[0], e[1])
        return full[0] - full[1] * nf ** (-e[0]) - full[2] * nc ** (-e[1]) - y

    vp = least_squares(vp_resid, np.clip(start[[2, 4]], lo[[2, 4]], hi[[2, 4]]), bounds=(lo[[2, 4]], hi[[2, 4]]),
                       method="trf", x_scale="jac", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=2_000)
    lin, _ = _linear_part(nf, nc, y, *vp.x)
    x0 = np.array([lin[0], lin[1], vp.x[0], lin[2], vp.x[1]])
    # then the joint problem from there (a step is taken only where it lowers SS_res)
    res = least_squares(resid, np.clip(x0, lo, hi), jac=jac, bounds=(lo, hi), method="trf",
                        x_scale="jac", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=200)
    # the linear part re-solved exactly at the final exponents: never worse for them, and a
    # C the constraint holds at 0 is exactly 0 (trf keeps iterates strictly inside bounds)
    lin, _ = _linear_part(nf, nc, y, res.x[2], res.x[4])
    p = np.array([lin[0], lin[1], res.x[2], lin[2], res.x[4]])
    ss_res = float(np.sum(resid(p) ** 2))
    n = len(y_raw)
    J = jac(p)
    s2 = ss_res / (n - len(PARAMS))
    cov = s2 * np.linalg.pinv(J.T @ J)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    # A flat direction of J (e.g. C_f = 0 leaves alpha free) leaves the parameters
    # along it undetermined: their errors are undefined (NaN), the others stand.
    _, sv, vt = np.linalg.svd(J, full_matrices=False)
    flat = vt[sv <= sv[0] * max(J.shape) * np.finfo(np.float64).eps]
    if len(flat):
        err[np.any(np.abs(flat) > 1e-6, axis=0)] = np.nan
    at_bound = [k for k, v, l, h in zip(PARAMS, p, lo, hi) if np.isclose(v, l) or np.isclose(v, h)]
    unit = np.array([spread, spread, 1.0, spread, 1.0])  # back to the scores' units
    params = p * unit
    params[0] += y_mean
    with np.errstate(over="ignore"):  # scores near 1e200: a variance in their units is out of range (inf)
        cov = cov * np.outer(unit, unit)
    return ScalingFit(params={k: float(v) for k, v in zip(PARAMS, params)},
                      stderr={k: float(v) for k, v in zip(PARAMS, err * unit)}, cov=cov,
                      r2=1.0 - ss_res / ss_tot, rmse=spread * math.sqrt(ss_res / n), n_points=n,
                      at_bound=at_bound, message=str(res.message))
