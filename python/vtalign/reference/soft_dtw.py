"""Float64 oracle for soft-DTW and S2DTW (docs/design.md §3.4).

Written plainly from the definitions, cell by cell (vectorised only over the
batch), so every fast backend can be checked against it. Nothing here is fast:
keep sizes small (N·M up to a few thousand cells).

Conventions shared by every backend (the Triton and C++ kernels follow them):

* Indices are 0-based: cell (i, j) pairs x[i] with y[j]; the DP matrix has a
  border, R[i+1, j+1] is the value of cell (i, j), R[0, 0] = 0 and the rest of
  row 0 / column 0 is +inf.
* ``softmin_γ(a, b, c) = −γ log(e^{−a/γ} + e^{−b/γ} + e^{−c/γ})``, computed as
  ``m − γ log Σ e^{−(v−m)/γ}`` with m the minimum; if all three are +inf the
  result is +inf (never NaN).
* Per-pair lengths: pair b uses the leading ``n_b × m_b`` block of the padded
  ``[N, M]`` cost; its value is R[n_b, m_b]; E is 0 outside the block.
* Sakoe–Chiba band ``w`` (None or negative = no band), with n, m the pair's own lengths:
  cell (i, j) is inside iff ``|i·(m−1) − j·(n−1)| ≤ w·min(n−1, m−1)``.
  For n = m this is exactly ``|i − j| ≤ w`` (pytorch-softdtw-cuda's rule);
  for n ≠ m it is a band of half-width w, measured along the longer axis,
  around the straight line from (0, 0) to (n−1, m−1). If n = 1 or m = 1 every
  cell is inside. Integer arithmetic: all backends agree exactly.
  ``min_bandwidth(n, m)`` is the smallest w that keeps a monotone path from
  (0, 0) to (n−1, m−1); with w ≥ it every in-band cell is reachable, so no
  value is ever +inf because of the band. A smaller w is an error.
* The expected alignment E = ∂value/∂C (Algorithm 2 of Cuturi & Blondel),
  ∂value/∂γ = (value − ⟨E, C⟩)/γ.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vtalign.ops._common import unit_rows

INF = float("inf")


# ---------------------------------------------------------------- band rule
def _band_int(bandwidth) -> int | None:
    """Band half-width as an int (floats are floored); None for no band (None or negative)."""
    if bandwidth is None or float(bandwidth) < 0:
        return None
    return int(math.floor(float(bandwidth)))


def in_band(i: int, j: int, n: int, m: int, bandwidth) -> bool:
    """Is 0-based cell (i, j) inside the band for a pair of lengths (n, m)?"""
    w = _band_int(bandwidth)
    if w is None:
        return True
    return abs(i * (m - 1) - j * (n - 1)) <= w * min(n - 1, m - 1)


def band_mask(n: int, m: int, bandwidth, N: int | None = None, M: int | None = None) -> torch.Tensor:
    """Bool [N, M] (default [n, m]): cells of a length-(n, m) pair that the DP visits."""
    N = n if N is None else N
    M = m if M is None else M
    mask = torch.zeros(N, M, dtype=torch.bool)
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    w = _band_int(bandwidth)
    if w is None:
        mask[:n, :m] = True
    else:
        mask[:n, :m] = (i * (m - 1) - j * (n - 1)).abs() <= w * min(n - 1, m - 1)
    return mask


def min_bandwidth(n: int, m: int) -> int:
    """Smallest band w for which (n−1, m−1) is reachable from (0, 0) (closed form).

    With p = max(n,m)−1, q = min(n,m)−1 and g = gcd(p, q), consecutive columns of
    the short axis have band centres p/q apart; the largest jump a path must make
    is ceil((q − g + p)/q) cells, and a half-width w covers 2w + 1 of them.
    """
    p, q = max(n, m) - 1, min(n, m) - 1
    if q == 0:
        return 0
    g = math.gcd(p, q)
    gap = -((-(q - g + p)) // q)  # ceil((q - g + p) / q)
    return max(0, -((-(gap - 1)) // 2))  # ceil((gap - 1) / 2)


def reachable(n: int, m: int, bandwidth) -> bool:
    """Brute-force check of the band rule: is the end cell reachable? (for tests)"""
    ok = band_mask(n, m, bandwidth)
    reach = torch.zeros(n, m, dtype=torch.bool)
    for i in range(n):
        for j in range(m):
            if not ok[i, j]:
                continue
            if i == 0 and j == 0:
                reach[i, j] = True
            else:
                reach[i, j] = bool((i > 0 and reach[i - 1, j]) or (j > 0 and reach[i, j - 1])
                                   or (i > 0 and j > 0 and reach[i - 1, j - 1]))
    return bool(reach[n - 1, m - 1])


# ------------------------------------------------------------------ soft-min
def softmin(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, gamma) -> torch.Tensor:
    """Stable −γ log(e^{−a/γ}+e^{−b/γ}+e^{−c/γ}); +inf when all three are +inf."""
    v = torch.stack([a, b, c], dim=0)
    mn = v.min(dim=0).values
    finite = torch.isfinite(mn)
    shift = torch.where(finite, mn, torch.zeros_like(mn))
    live = torch.isfinite(v)  # +inf terms contribute exactly 0 (kept out of autograd: no inf·0)
    v_safe = torch.where(live, v, shift.expand_as(v))
    s = (torch.exp(-(v_safe - shift) / gamma) * live).sum(dim=0)
    return torch.where(finite, shift - gamma * torch.log(torch.where(finite, s, torch.ones_like(s))),
                       torch.full_like(mn, INF))


# ----------------------------------------------------------------- helpers
def _lengths(lengths, B: int, full: int) -> list[int]:
    if lengths is None:
        return [full] * B
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.tolist()
    return [int(v) for v in lengths]


def _gammas(gamma, B: int, dtype=torch.float64) -> torch.Tensor:
    """γ as a [B] tensor (keeps the autograd graph of a tensor γ)."""
    if isinstance(gamma, torch.Tensor):
        g = gamma.to(dtype)
        return g.expand(B) if g.dim() == 0 else g.reshape(B)
    return torch.full((B,), float(gamma), dtype=dtype)


# ------------------------------------------------------------- the DP itself
def soft_dtw_R(C: torch.Tensor, gamma, *, bandwidth=None, x_lengths=None, y_lengths=None) -> torch.Tensor:
    """The forward DP: R [B, N+1, M+1] in float64 (border row/column 0 included).

    Cells outside a pair's lengths or band are +inf. Built from plain torch ops
    without in-place writes, so autograd can differentiate through it (that is
    the independent oracle for E).
    """
    C = C.to(torch.float64)
    B, N, M = C.shape
    ns, ms = _lengths(x_lengths, B, N), _lengths(y_lengths, B, M)
    g = _gammas(gamma, B)
    if not (C.requires_grad or g.requires_grad) or not torch.is_grad_enabled():
        return _soft_dtw_R_floats(C, g, bandwidth, ns, ms)
    inf = torch.full((B,), INF, dtype=torch.float64)
    # active[b][i][j]: cell inside pair b's block and band
    active = torch.zeros(B, N, M, dtype=torch.bool)
    for b in range(B):
        active[b, : ns[b], : ms[b]] = band_mask(ns[b], ms[b], bandwidth)
    R = [[inf for _ in range(M + 1)] for _ in range(N + 1)]
    R[0][0] = torch.zeros(B, dtype=torch.float64)
    for i in range(1, N + 1):
        for j in range(1, M + 1):
            act = active[:, i - 1, j - 1]
            if not bool(act.any()):
                continue
            val = C[:, i - 1, j - 1] + softmin(R[i - 1][j - 1], R[i - 1][j], R[i][j - 1], g)
            R[i][j] = torch.where(act, val, inf)
    return torch.stack([torch.stack(row, dim=-1) for row in R], dim=-2)


def _softmin_float(a: float, b: float, c: float, gamma: float) -> float:
    mn = min(a, b, c)
    if mn == INF:
        return INF
    return mn - gamma * math.log(sum(math.exp(-(v - mn) / gamma) for v in (a, b, c)))


def _soft_dtw_R_floats(C: torch.Tensor, g: torch.Tensor, bandwidth, ns, ms) -> torch.Tensor:
    """The same recurrence on Python floats, pair by pair (no autograd needed)."""
    B, N, M = C.shape
    out = torch.full((B, N + 1, M + 1), INF, dtype=torch.float64)
    for b in range(B):
        n, m, gb = ns[b], ms[b], float(g[b])
        Cb = C[b].tolist()
        R = [[INF] * (M + 1) for _ in range(N + 1)]
        R[0][0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                if in_band(i - 1, j - 1, n, m, bandwidth):
                    R[i][j] = Cb[i - 1][j - 1] + _softmin_float(R[i - 1][j - 1], R[i - 1][j], R[i][j - 1], gb)
        out[b] = torch.tensor(R, dtype=torch.float64)
    return out


def soft_dtw_cost(C: torch.Tensor, gamma, *, bandwidth=None, x_lengths=None, y_lengths=None) -> torch.Tensor:
    """Soft-DTW value [B] of a cost C [B, N, M]; differentiable w.r.t. C and γ by autograd."""
    B, N, M = C.shape
    R = soft_dtw_R(C, gamma, bandwidth=bandwidth, x_lengths=x_lengths, y_lengths=y_lengths)
    ns, ms = _lengths(x_lengths, B, N), _lengths(y_lengths, B, M)
    return torch.stack([R[b, ns[b], ms[b]] for b in range(B)])


def soft_dtw_alignment(C: torch.Tensor, gamma, *, bandwidth=None, x_lengths=None,
                       y_lengths=None) -> torch.Tensor:
    """Expected alignment E [B, N, M] = ∂value/∂C by the backward recurrence (Algorithm 2).

    E[i, j] = Σ over successors s ∈ {(i+1, j), (i, j+1), (i+1, j+1)} inside the
    pair's block and band of E[s] · exp((R[s] − C[s] − R[i, j]) / γ), with
    E[n−1, m−1] = 1, and E = 0 where R = +inf. The exponent is ≤ 0 (a soft-min is
    at most its smallest argument), so every weight lies in [0, 1].
    """
    C = C.detach().to(torch.float64)
    B, N, M = C.shape
    gamma = gamma.detach() if isinstance(gamma, torch.Tensor) else gamma
    R = soft_dtw_R(C, gamma, bandwidth=bandwidth, x_lengths=x_lengths, y_lengths=y_lengths)[:, 1:, 1:]
    ns, ms = _lengths(x_lengths, B, N), _lengths(y_lengths, B, M)
    g = _gammas(gamma, B).detach()
    E = torch.zeros(B, N, M, dtype=torch.float64)
    for b in range(B):
        n, m, gb = ns[b], ms[b], float(g[b])
        Rb, Cb = R[b].tolist(), C[b].tolist()  # plain floats: this loop is cell by cell
        Eb = [[0.0] * M for _ in range(N)]
        for i in range(n - 1, -1, -1):
            for j in range(m - 1, -1, -1):
                if i == n - 1 and j == m - 1:
                    Eb[i][j] = 1.0
                    continue
                if not math.isfinite(Rb[i][j]):
                    continue
                acc = 0.0
                for si, sj in ((i + 1, j), (i, j + 1), (i + 1, j + 1)):
                    if si < n and sj < m and math.isfinite(Rb[si][sj]):
                        acc += Eb[si][sj] * math.exp((Rb[si][sj] - Cb[si][sj] - Rb[i][j]) / gb)
                Eb[i][j] = acc
        E[b] = torch.tensor(Eb, dtype=torch.float64)
    return E


soft_dtw_alignment_cost = soft_dtw_alignment  # the name CONTRIBUTING.md gives the E oracle


# -------------------------------------------------------------------- costs
def pairwise_cost(x: torch.Tensor, y: torch.Tensor, cost="sqeuclidean") -> torch.Tensor:
    """C [B, N, M] from x [B, N, D], y [B, M, D], densely from the definition."""
    if callable(cost):
        return cost(x, y)
    x, y = x.to(torch.float64), y.to(torch.float64)
    if cost == "sqeuclidean":
        return ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    if cost == "cosine":
        xn, yn = unit_rows(x), unit_rows(y)
        return 1.0 - (xn[:, :, None, :] * yn[:, None, :, :]).sum(-1)
    if cost == "negdot":
        return -(x[:, :, None, :] * y[:, None, :, :]).sum(-1)
    raise ValueError(f"unknown cost {cost!r}")


def soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma=1.0, *, cost="sqeuclidean", bandwidth=None,
             x_lengths=None, y_lengths=None, normalize: bool = False) -> torch.Tensor:
    """Soft-DTW [B] between x [B, N, D] and y [B, M, D]; differentiable by autograd.

    normalize=True gives the divergence sdtw(x, y) − ½(sdtw(x, x) + sdtw(y, y)),
    each term with its own lengths (and the band rule for its own lengths).
    """
    v = soft_dtw_cost(pairwise_cost(x, y, cost), gamma, bandwidth=bandwidth,
                      x_lengths=x_lengths, y_lengths=y_lengths)
    if not normalize:
        return v
    vxx = soft_dtw_cost(pairwise_cost(x, x, cost), gamma, bandwidth=bandwidth,
                        x_lengths=x_lengths, y_lengths=x_lengths)
    vyy = soft_dtw_cost(pairwise_cost(y, y, cost), gamma, bandwidth=bandwidth,
                        x_lengths=y_lengths, y_lengths=y_lengths)
    return v - 0.5 * (vxx + vyy)


def soft_dtw_pairwise(x: torch.Tensor, y: torch.Tensor, gamma=1.0, *, cost="sqeuclidean",
                      bandwidth=None, x_lengths=None, y_lengths=None,
                      normalize: bool = False) -> torch.Tensor:
    """[B1, B2] soft-DTW for every (x[a], y[b]) pair: a plain double loop."""
    B1, B2 = x.shape[0], y.shape[0]
    xl, yl = _lengths(x_lengths, B1, x.shape[1]), _lengths(y_lengths, B2, y.shape[1])
    rows = []
    for a in range(B1):
        row = []
        for b in range(B2):
            row.append(soft_dtw(x[a:a + 1], y[b:b + 1], gamma, cost=cost, bandwidth=bandwidth,
                                x_lengths=[xl[a]], y_lengths=[yl[b]], normalize=normalize)[0])
        rows.append(torch.stack(row))
    return torch.stack(rows)


# -------------------------------------------------------------------- S2DTW
def s2dtw_smooth(C: torch.Tensor, smoothing_gamma, *, x_lengths=None, y_lengths=None) -> torch.Tensor:
    """Step 1, local smoothing: C'[i,j] = C[i,j] + softmin_γs(C[i,j−1], C[i−1,j], C[i−1,j−1]).

    Out-of-range neighbours (outside the pair's block) are +inf; at (0, 0) the
    soft-min is taken over three zeros (= −γs·log 3). Cells outside the block are 0.
    """
    C = C.to(torch.float64)
    B, N, M = C.shape
    ns, ms = _lengths(x_lengths, B, N), _lengths(y_lengths, B, M)
    out = torch.zeros_like(C)
    gs = float(smoothing_gamma)
    for b in range(B):
        n, m = ns[b], ms[b]
        for i in range(n):
            for j in range(m):
                if i == 0 and j == 0:
                    nb = [0.0, 0.0, 0.0]
                else:
                    nb = [C[b, i, j - 1] if j > 0 else INF,
                          C[b, i - 1, j] if i > 0 else INF,
                          C[b, i - 1, j - 1] if (i > 0 and j > 0) else INF]
                a, bb, c = (torch.as_tensor(v, dtype=torch.float64) for v in nb)
                out[b, i, j] = C[b, i, j] + softmin(a, bb, c, gs)
    return out


def s2dtw_matrix(C: torch.Tensor, smoothing_gamma=0.1, null_cost=0.5, *, x_lengths=None,
                 y_lengths=None) -> torch.Tensor:
    """Steps 1–2: the explicit [B, 2N+1, 2M+1] weak-alignment cost.

    C' sits at odd positions (2i+1, 2j+1); every other cell (even row or even
    column) is the null cost τ. Pair b's block is (2n_b+1) × (2m_b+1); cells
    beyond it are τ too (they are never visited).
    """
    Cs = s2dtw_smooth(C, smoothing_gamma, x_lengths=x_lengths, y_lengths=y_lengths)
    B, N, M = C.shape
    W = torch.full((B, 2 * N + 1, 2 * M + 1), float(null_cost), dtype=torch.float64)
    W[:, 1::2, 1::2] = Cs
    return W


def s2dtw_cost(C: torch.Tensor, gamma=0.1, *, smoothing_gamma=0.1, null_cost=0.5, x_lengths=None,
               y_lengths=None) -> torch.Tensor:
    """Step 3: ordinary soft-DTW on the weak-alignment matrix; [B]."""
    B, N, M = C.shape
    ns, ms = _lengths(x_lengths, B, N), _lengths(y_lengths, B, M)
    W = s2dtw_matrix(C, smoothing_gamma, null_cost, x_lengths=ns, y_lengths=ms)
    return soft_dtw_cost(W, gamma, x_lengths=[2 * n + 1 for n in ns], y_lengths=[2 * m + 1 for m in ms])


def s2dtw(x: torch.Tensor, y: torch.Tensor, *, gamma=0.1, smoothing_gamma=0.1, null_cost=0.5,
          cost="negdot", x_lengths=None, y_lengths=None) -> torch.Tensor:
    """S2DTW [B] between x [B, N, D] and y [B, M, D] (cost defaults to VT-TWINS' −x·y)."""
    return s2dtw_cost(pairwise_cost(x, y, cost), gamma, smoothing_gamma=smoothing_gamma,
                      null_cost=null_cost, x_lengths=x_lengths, y_lengths=y_lengths)


def s2dtw_pairwise(x: torch.Tensor, y: torch.Tensor, *, gamma=0.1, smoothing_gamma=0.1, null_cost=0.5,
                   cost="negdot", x_lengths=None, y_lengths=None) -> torch.Tensor:
    """[B1, B2] S2DTW for every (x[a], y[b]) pair: a plain double loop."""
    B1, B2 = x.shape[0], y.shape[0]
    xl, yl = _lengths(x_lengths, B1, x.shape[1]), _lengths(y_lengths, B2, y.shape[1])
    return torch.stack([
        torch.stack([s2dtw(x[a:a + 1], y[b:b + 1], gamma=gamma, smoothing_gamma=smoothing_gamma,
                           null_cost=null_cost, cost=cost, x_lengths=[xl[a]], y_lengths=[yl[b]])[0]
                     for b in range(B2)])
        for a in range(B1)])


__all__: Sequence[str] = [
    "band_mask", "in_band", "min_bandwidth", "reachable", "softmin", "soft_dtw_R", "soft_dtw_cost",
    "soft_dtw_alignment", "soft_dtw_alignment_cost", "pairwise_cost", "soft_dtw", "soft_dtw_pairwise", "s2dtw_smooth",
    "s2dtw_matrix", "s2dtw_cost", "s2dtw", "s2dtw_pairwise",
]
