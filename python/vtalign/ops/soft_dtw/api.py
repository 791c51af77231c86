"""The public soft-DTW functions: every check runs here, before any kernel."""
from __future__ import annotations

import torch

from vtalign.ops._common import DeferredChecks, check_finite, compute_dtype, resolve_backend, unit_rows
from vtalign.ops.soft_dtw import cpp_fused
from vtalign.ops.soft_dtw.checks import (
    CostArg,
    Gamma,
    Lengths,
    check_bandwidth,
    check_cost_inputs,
    check_features,
    check_gamma,
)
from vtalign.ops.soft_dtw.costs import pairwise_cost
from vtalign.ops.soft_dtw.custom_ops import (
    bwd_op,
    fwd_op,
    gamma_vector,
    reference_gamma,
    reference_values,
    run_costs,
    triton_gap,
)
from vtalign.reference import soft_dtw as ref


def soft_dtw_cost(C: torch.Tensor, gamma: Gamma = 1.0, *, bandwidth: int | None = None,
                  x_lengths: Lengths = None, y_lengths: Lengths = None,
                  backend: str = "auto") -> torch.Tensor:
    """Soft-DTW of precomputed costs.

    Args:
        C: cost matrices `[B, N, M]` (float; differentiable).
        gamma: γ > 0: a float, a 0-d tensor or a `[B]` tensor (differentiable).
        bandwidth: Sakoe–Chiba half-width w (None = no band); for n = m the cells
            |i − j| <= w, for n != m a band of half-width w along the diagonal from
            (1, 1) to (n, m); w < `min_bandwidth(n, m)` for some pair is an error.
        x_lengths, y_lengths: per-pair lengths `[B]` (1..N, 1..M); None = full.
        backend: "auto", "cpp", "torch", "triton" or "reference".

    Returns:
        values `[B]` (float64 for float64 input on the CPU, float32 otherwise).
    """
    g, xl, yl, w = check_cost_inputs(C, gamma, bandwidth, x_lengths, y_lengths)
    be = resolve_backend(backend, [C] + ([g] if isinstance(g, torch.Tensor) else []), triton_unsupported=triton_gap(C))
    if be == "reference":
        return reference_values(C, g, xl, yl, w)
    return run_costs(C[None], g, xl, yl, w, be)


def soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma: Gamma = 1.0, *, cost: CostArg = "sqeuclidean",
             bandwidth: int | None = None, x_lengths: Lengths = None, y_lengths: Lengths = None,
             normalize: bool = False, backend: str = "auto") -> torch.Tensor:
    """Soft-DTW between x `[B, N, D]` and y `[B, M, D]` -> `[B]`.

    cost: "sqeuclidean" (default), "cosine" (1 − cos), "negdot" (−x·y) — each from
    one batched GEMM — or a callable `(x, y) -> C [B, N, M]`. normalize=True gives
    the divergence sdtw(x, y) − ½(sdtw(x, x) + sdtw(y, y)) (each term with its own
    lengths), which is 0 for x = y. Other arguments as in `soft_dtw_cost`.
    Differentiable w.r.t. x, y and a tensor γ.
    """
    checks = DeferredChecks()
    xl, yl = check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True, finite=False)
    be = resolve_backend(backend, [x, y], triton_unsupported=triton_gap(x, y))
    xn, yn = _finite_features(x, y, cost, be, checks)
    B = x.shape[0]
    g = check_gamma(gamma, B, checks=checks)
    w = check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()  # the call's one host sync: every value check above, before any kernel
    if be == "reference":
        gg = reference_gamma(g)
        return ref.soft_dtw(x, y, gg, cost=cost, bandwidth=None if w < 0 else w, x_lengths=xl.tolist(),
                            y_lengths=yl.tolist(), normalize=normalize)
    v = _run_features(x, y, cost, g, xl, yl, w, be, xn, yn)
    if not normalize:
        return v
    vxx = _run_features(x, x, cost, g, xl, xl, w, be, xn, xn)
    vyy = _run_features(y, y, cost, g, yl, yl, w, be, yn, yn)
    return v - 0.5 * (vxx + vyy)


def _finite_features(x: torch.Tensor, y: torch.Tensor, cost: CostArg, backend: str, checks: DeferredChecks):
    """The NaN/Inf check of x and y (added to `checks`) -> their squared row norms (xn, yn)
    when the fused squared-Euclidean path needs them, else (None, None). The norms cost one
    pass, as the check's own sum would, and a NaN/Inf anywhere in a row makes its norm
    non-finite, so only a non-finite norm pays for the exact search (`check_finite`)."""
    dt = compute_dtype(x, backend=backend)
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    if not (backend == "cpp" and cost == "sqeuclidean" and cpp_fused.fused_available(B, N, M, dt)):
        checks.finite("x", x)
        checks.finite("y", y)
        return None, None
    norms = []
    for name, t in (("x", x), ("y", y)):
        n = cpp_fused.sq_norms(t.to(dt))
        # raises unless the norms merely overflowed
        checks.add(~torch.isfinite(n.sum()), lambda name=name, t=t: check_finite(name, t))
        norms.append(n)
    return norms[0], norms[1]


def _run_features(x: torch.Tensor, y: torch.Tensor, cost: CostArg, gamma: Gamma, xl: torch.Tensor,
                  yl: torch.Tensor, w: int, backend: str, xn: torch.Tensor | None = None,
                  yn: torch.Tensor | None = None) -> torch.Tensor:
    """values [B] for checked features; the fused C++ path when it applies (`cpp_fused`).
    xn, yn: the squared row norms when the caller has them (`_finite_features`)."""
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    dt = compute_dtype(x, backend=backend)
    if backend == "cpp" and not callable(cost) and cpp_fused.fused_available(B, N, M, dt):
        if cost == "cosine":
            x, y = unit_rows(x), unit_rows(y)
        sq, offset = cost == "sqeuclidean", 1.0 if cost == "cosine" else 0.0
        x, y = x.to(dt), y.to(dt)
        if sq:
            xn = cpp_fused.sq_norms(x) if xn is None else xn
            yn = cpp_fused.sq_norms(y) if yn is None else yn
        else:
            xn = yn = x.new_empty(0)
        g = gamma_vector(gamma, B, 1, dt, x.device)
        return cpp_fused.FeatureSoftDTW.apply(x, y, g, xl, yl, int(w), sq, offset, xn, yn)
    return run_costs(pairwise_cost(x, y, cost)[None], gamma, xl, yl, w, backend)


def soft_dtw_pairwise(x: torch.Tensor, y: torch.Tensor, gamma: Gamma = 1.0, *,
                      cost: CostArg = "sqeuclidean", bandwidth: int | None = None,
                      x_lengths: Lengths = None, y_lengths: Lengths = None, normalize: bool = False,
                      backend: str = "auto") -> torch.Tensor:
    """Soft-DTW for every pair (x[a], y[b]): x `[B1, N, D]`, y `[B2, M, D]` -> `[B1, B2]`.

    The B1·B2 cost matrices come from one GEMM (no per-pair Python loop) and the DP
    runs once over all pairs. γ: a float or a 0-d tensor.
    normalize=True subtracts ½(sdtw(x_a, x_a) + sdtw(y_b, y_b)).
    """
    checks = DeferredChecks()
    xl, yl = check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=False)
    B1, B2 = x.shape[0], y.shape[0]
    g = check_gamma(gamma, 1, checks=checks)
    pxl = xl[:, None].expand(B1, B2).reshape(-1)
    pyl = yl[None, :].expand(B1, B2).reshape(-1)
    w = check_bandwidth(bandwidth, pxl, pyl,
                         pair_names=lambda p: f"pair (x[{p // B2}], y[{p % B2}])", checks=checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=triton_gap(x, y))
    if be == "reference":
        gg = reference_gamma(g)
        return ref.soft_dtw_pairwise(x, y, gg, cost=cost, bandwidth=None if w < 0 else w,
                                     x_lengths=xl.tolist(), y_lengths=yl.tolist(), normalize=normalize)
    v = run_costs(pairwise_cost(x, y, cost, pairwise=True), g, pxl, pyl, w, be).view(B1, B2)
    if not normalize:
        return v
    vxx = run_costs(pairwise_cost(x, x, cost)[None], g, xl, xl, w, be)
    vyy = run_costs(pairwise_cost(y, y, cost)[None], g, yl, yl, w, be)
    return v - 0.5 * (vxx[:, None] + vyy[None, :])


def _alignment(C4: torch.Tensor, g: Gamma, xl, yl, w: int, be: str) -> torch.Tensor:
    P1, P2, N, M = C4.shape
    if be == "reference":
        gg = g.detach().double() if isinstance(g, torch.Tensor) else g
        return ref.soft_dtw_alignment(C4.reshape(P1 * P2, N, M), gg, bandwidth=None if w < 0 else w,
                                      x_lengths=xl.tolist(), y_lengths=yl.tolist())
    dt = compute_dtype(C4, backend=be)
    C4 = C4.detach().to(dt).contiguous()
    gv = gamma_vector(g.detach() if isinstance(g, torch.Tensor) else g, P1, P2, dt, C4.device)
    dev = C4.device
    _, R = fwd_op(C4, gv, xl.to(dev), yl.to(dev), int(w), be)
    E, _ = bwd_op(C4, R, gv, xl.to(dev), yl.to(dev), int(w), torch.ones(P1 * P2, dtype=dt, device=dev), be,
                   False)
    return E.reshape(P1 * P2, N, M)


def soft_dtw_alignment_cost(C: torch.Tensor, gamma: Gamma = 1.0, *, bandwidth: int | None = None,
                            x_lengths: Lengths = None, y_lengths: Lengths = None,
                            backend: str = "auto") -> torch.Tensor:
    """Expected alignment E = ∂ soft_dtw_cost / ∂C, `[B, N, M]` (not differentiable).

    E is 0 outside each pair's block and band; E[n_b−1, m_b−1] = 1 and every
    anti-diagonal of the block carries mass between 0 and 1.
    """
    g, xl, yl, w = check_cost_inputs(C, gamma, bandwidth, x_lengths, y_lengths)
    be = resolve_backend(backend, [C], triton_unsupported=triton_gap(C))
    with torch.no_grad():
        return _alignment(C[None], g, xl, yl, w, be)


def soft_dtw_alignment(x: torch.Tensor, y: torch.Tensor, gamma: Gamma = 1.0, *,
                       cost: CostArg = "sqeuclidean", bandwidth: int | None = None,
                       x_lengths: Lengths = None, y_lengths: Lengths = None,
                       backend: str = "auto") -> torch.Tensor:
    """Expected alignment E `[B, N, M]` between x `[B, N, D]` and y `[B, M, D]`
    (E = ∂ soft_dtw / ∂C for the chosen cost; not differentiable)."""
    checks = DeferredChecks()
    xl, yl = check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True)
    B = x.shape[0]
    g = check_gamma(gamma, B, checks=checks)
    w = check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=triton_gap(x, y))
    with torch.no_grad():
        C = ref.pairwise_cost(x, y, cost) if be == "reference" else pairwise_cost(x, y, cost)
        return _alignment(C[None], g, xl, yl, w, be)
