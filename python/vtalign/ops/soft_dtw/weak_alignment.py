"""S2DTW (VT-TWINS): locally smoothed costs, a weak alignment with a null cost, soft-DTW."""
from __future__ import annotations

import math

import torch

from vtalign.ops._common import DeferredChecks, resolve_backend
from vtalign.ops.soft_dtw.checks import CostArg, Gamma, Lengths, check_features, check_gamma
from vtalign.ops.soft_dtw.costs import pairwise_cost
from vtalign.ops.soft_dtw.custom_ops import reference_gamma, run_costs, triton_gap
from vtalign.reference import soft_dtw as ref


def _softmin3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, gamma: float) -> torch.Tensor:
    """Stable −γ log Σ e^{−v/γ}; +inf arguments weigh 0 (and get no gradient)."""
    v = torch.stack([a, b, c])
    live = torch.isfinite(v)
    mn = torch.where(live, v, torch.full_like(v, float("inf"))).min(0).values
    fin = torch.isfinite(mn)
    sh = torch.where(fin, mn, torch.zeros_like(mn))
    vs = torch.where(live, v, sh.expand_as(v))
    s = (torch.exp(-(vs - sh) / gamma) * live).sum(0)
    return torch.where(fin, sh - gamma * torch.log(torch.where(fin, s, torch.ones_like(s))),
                       torch.full_like(mn, float("inf")))


def s2dtw_matrix(C: torch.Tensor, smoothing_gamma: float = 0.1, null_cost: float = 0.5) -> torch.Tensor:
    """VT-TWINS steps 1–2 on C `[P, N, M]` -> W `[P, 2N+1, 2M+1]` (differentiable).

    C'[i,j] = C[i,j] + softmin_γs(C[i,j−1], C[i−1,j], C[i−1,j−1]) (out-of-range
    neighbours +inf, the (0, 0) soft-min over three zeros); W holds C' at odd
    positions and the null cost τ in every even row and column. For a pair of
    lengths (n, m) the leading (2n+1) × (2m+1) block of W is its own matrix.
    """
    P, N, M = C.shape
    inf = torch.full((P, 1, M), float("inf"), dtype=C.dtype, device=C.device)
    up = torch.cat([inf, C[:, :-1]], 1)
    left = torch.cat([torch.full((P, N, 1), float("inf"), dtype=C.dtype, device=C.device), C[:, :, :-1]], 2)
    diag = torch.cat([torch.full((P, N, 1), float("inf"), dtype=C.dtype, device=C.device), up[:, :, :-1]], 2)
    sm = _softmin3(left, up, diag, smoothing_gamma)
    corner = torch.zeros(P, N, M, dtype=torch.bool, device=C.device)
    corner[:, 0, 0] = True
    sm = torch.where(corner, torch.full_like(sm, -smoothing_gamma * math.log(3.0)), sm)
    W = torch.full((P, 2 * N + 1, 2 * M + 1), float(null_cost), dtype=C.dtype, device=C.device)
    W[:, 1::2, 1::2] = C + sm
    return W


def _check_s2dtw_args(gamma, smoothing_gamma, null_cost, B, checks: DeferredChecks):
    if isinstance(smoothing_gamma, torch.Tensor):
        raise TypeError("smoothing_gamma must be a float")
    g = check_gamma(gamma, B, checks=checks)
    gs = check_gamma(smoothing_gamma, B, "smoothing_gamma")
    if isinstance(null_cost, bool) or not isinstance(null_cost, (int, float)) or not math.isfinite(null_cost):
        raise ValueError(f"null_cost must be a finite float, got {null_cost!r}")
    return g, gs


def s2dtw(x: torch.Tensor, y: torch.Tensor, *, gamma: Gamma = 0.1, smoothing_gamma: float = 0.1,
          null_cost: float = 0.5, cost: CostArg = "negdot", x_lengths: Lengths = None,
          y_lengths: Lengths = None, backend: str = "auto") -> torch.Tensor:
    """S2DTW (VT-TWINS) between x `[B, N, D]` and y `[B, M, D]` -> `[B]`.

    Locally smoothed cost (γs = smoothing_gamma), weak alignment with a null cost τ
    for skipping a clip or a caption, then soft-DTW (γ = gamma) on the
    (2n+1) × (2m+1) matrix. cost defaults to VT-TWINS' negative dot product.
    Rectangular inputs and per-pair lengths are allowed.
    """
    checks = DeferredChecks()
    xl, yl = check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True)
    B = x.shape[0]
    g, gs = _check_s2dtw_args(gamma, smoothing_gamma, null_cost, B, checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=triton_gap(x, y))
    if be == "reference":
        gg = reference_gamma(g)
        return ref.s2dtw(x, y, gamma=gg, smoothing_gamma=gs, null_cost=null_cost, cost=cost,
                         x_lengths=xl.tolist(), y_lengths=yl.tolist())
    W = s2dtw_matrix(pairwise_cost(x, y, cost), gs, null_cost)
    return run_costs(W[None], g, 2 * xl + 1, 2 * yl + 1, -1, be)


def s2dtw_pairwise(x: torch.Tensor, y: torch.Tensor, *, gamma: Gamma = 0.1, smoothing_gamma: float = 0.1,
                   null_cost: float = 0.5, cost: CostArg = "negdot", x_lengths: Lengths = None,
                   y_lengths: Lengths = None, backend: str = "auto") -> torch.Tensor:
    """S2DTW for every pair (x[a], y[b]) -> `[B1, B2]`: one GEMM for all costs, one DP run."""
    checks = DeferredChecks()
    xl, yl = check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=False)
    B1, N = x.shape[0], x.shape[1]
    B2, M = y.shape[0], y.shape[1]
    g, gs = _check_s2dtw_args(gamma, smoothing_gamma, null_cost, 1, checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=triton_gap(x, y))
    if be == "reference":
        gg = reference_gamma(g)
        return ref.s2dtw_pairwise(x, y, gamma=gg, smoothing_gamma=gs, null_cost=null_cost, cost=cost,
                                  x_lengths=xl.tolist(), y_lengths=yl.tolist())
    C = pairwise_cost(x, y, cost, pairwise=True).reshape(B1 * B2, N, M)
    W = s2dtw_matrix(C, gs, null_cost).view(B1, B2, 2 * N + 1, 2 * M + 1)
    pxl = (2 * xl + 1)[:, None].expand(B1, B2).reshape(-1)
    pyl = (2 * yl + 1)[None, :].expand(B1, B2).reshape(-1)
    return run_costs(W, g, pxl, pyl, -1, be).view(B1, B2)
