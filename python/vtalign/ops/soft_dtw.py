"""Soft-DTW and S2DTW (DESIGN.md §3.4): checks, costs, backends, custom ops, autograd.

Layers, top to bottom:
  * public functions (`soft_dtw`, `soft_dtw_cost`, `soft_dtw_pairwise`,
    `soft_dtw_alignment`, `s2dtw`, `s2dtw_pairwise`): every check runs here,
    before any kernel; the value checks (finite inputs, γ, lengths, band) are
    device-side flags read back with one host sync per call (`DeferredChecks`),
    and the lengths stay on the data's device;
  * costs from one GEMM (`_GemmCost`): sqeuclidean = |x|² + |y|² − 2x·yᵀ,
    negdot = −x·yᵀ, cosine = 1 − x̂·ŷᵀ; a pairwise cost for B1×B2 pairs is one
    [B1·N, D] × [D, B2·M] product viewed as [B1, B2, N, M] (strided, no copy);
    no [.., N, M, D] tensor is ever built;
  * two torch.library custom ops, `vtalign::soft_dtw_fwd` (values and the DP
    matrix R, opaque, in the backend's layout) and `vtalign::soft_dtw_bwd`
    (E·grad and ⟨E, C⟩), with fake kernels; autograd is registered on the
    forward op: ∂/∂C = E (the backward recurrence, never autograd through the
    DP) and ∂/∂γ = (value − ⟨E, C⟩)/γ;
  * backends: "cpp" (csrc/soft_dtw.cpp), "triton" (kernels/soft_dtw.py),
    "torch" (the anti-diagonal recurrence in torch ops, any device) and
    "reference" (the float64 oracle, differentiated by autograd).

The band rule and the conventions are those of `vtalign.reference.soft_dtw`.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import torch

from vtalign.ops import _soft_dtw_fused as fused
from vtalign.ops._common import DeferredChecks, check_finite, check_tensor, cpp, full_precision_matmul, resolve_backend
from vtalign.ops._norm import unit_rows
from vtalign.reference import soft_dtw as ref

COSTS = ("sqeuclidean", "cosine", "negdot")
CostArg = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Lengths = torch.Tensor | Sequence[int] | None
Gamma = float | torch.Tensor


# ===================================================================== band
def min_bandwidth(n: int, m: int) -> int:
    """Smallest Sakoe–Chiba half-width w that keeps cell (n, m) reachable from (1, 1).

    The band for lengths (n, m) is |(i−1)(m−1) − (j−1)(n−1)| <= w·(min(n,m)−1)
    (for n = m exactly |i − j| <= w). With p = max−1, q = min−1, g = gcd(p, q),
    the largest jump between consecutive band columns is ceil((q − g + p)/q)
    cells and a half-width w spans 2w + 1 of them. 0 for equal lengths; it grows
    with the slope max(n,m)/min(n,m).
    """
    return ref.min_bandwidth(int(n), int(m))


# =================================================================== checks
# Value checks never read a device tensor back one by one: each adds a device-side flag
# to the call's `DeferredChecks`, and the entry point reads every flag with ONE host sync
# (`checks.run()`) before any kernel runs; only a raised flag re-runs its precise check
# (which may sync, as it is about to raise) for a message that names the argument.
# Lengths stay on the data's device; no shape decision needs their values (the kernels
# take the padded N, M), so no other sync is needed. A `checks` of None runs a check at
# once (callers outside this module).
def _defer(checks: DeferredChecks | None, bad: torch.Tensor, precise: Callable[[], None]) -> None:
    if checks is None:
        precise()
    else:
        checks.add(bad, precise)


def _check_gamma(gamma, B: int, name: str = "gamma", checks: DeferredChecks | None = None) -> Gamma:
    if isinstance(gamma, torch.Tensor):
        if not gamma.is_floating_point():
            raise TypeError(f"{name} must be a float or a floating tensor, got {gamma.dtype}")
        if gamma.dim() > 1 or (gamma.dim() == 1 and gamma.shape[0] != B):
            raise ValueError(f"{name} must be a scalar, a 0-d tensor or a [{B}] tensor (one per pair), "
                             f"got shape {tuple(gamma.shape)}")
        g = gamma.detach()

        def precise():
            if not bool(torch.isfinite(g).all()) or bool((g <= 0).any()):
                raise ValueError(f"{name} must be finite and > 0, got {g.tolist()}")

        _defer(checks, ~(torch.isfinite(g) & (g > 0)).all(), precise)
        return gamma
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(gamma).__name__}")
    if not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {gamma}")
    return float(gamma)


def _check_lengths(name: str, lengths: Lengths, B: int, full: int, device: torch.device | None = None,
                   checks: DeferredChecks | None = None) -> torch.Tensor:
    """int64 tensor [B] on `device` (the data's; default CPU) with every entry in [1, full]:
    checked at once for a sequence of ints (host values), through `checks` for a tensor."""
    device = torch.device("cpu") if device is None else device
    if lengths is None:
        return torch.full((B,), full, dtype=torch.int64, device=device)
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got {lengths.dtype}")
        if lengths.dim() != 1:
            raise ValueError(f"{name} must be 1-D [{B}], got shape {tuple(lengths.shape)}")
        t = lengths.detach().to(device, torch.int64)
    else:
        try:
            vals = [operator.index(v) for v in lengths]
        except TypeError:
            raise TypeError(f"{name} must be a 1-D integer tensor or a sequence of ints") from None
        t = torch.tensor(vals, dtype=torch.int64)
    if t.numel() != B:
        raise ValueError(f"{name} must have one length per sequence ({B}), got {t.numel()}")

    def precise():
        c = t.cpu()
        bad = (c < 1) | (c > full)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"{name}[{b}] = {int(c[b])} is outside [1, {full}] (the padded length)")

    if isinstance(lengths, torch.Tensor):
        _defer(checks, ((t < 1) | (t > full)).any(), precise)
        return t
    precise()
    return t.to(device)


def _min_bandwidths(xl: torch.Tensor, yl: torch.Tensor) -> torch.Tensor:
    """`min_bandwidth(n, m)` for every pair, in torch ops on the lengths' device (no sync).
    Lengths below 1 (rejected by their own check) are taken as 1, so nothing divides by 0."""
    n, m = xl.clamp_min(1), yl.clamp_min(1)
    p, q = torch.maximum(n, m) - 1, torch.minimum(n, m) - 1
    qs = q.clamp_min(1)
    g = torch.gcd(p, qs)
    gap = -torch.div(-(qs - g + p), qs, rounding_mode="floor")  # ceil((q - g + p) / q)
    need = (-torch.div(-(gap - 1), 2, rounding_mode="floor")).clamp_min(0)  # ceil((gap - 1) / 2)
    return torch.where(q == 0, torch.zeros_like(need), need)


def _check_bandwidth(bandwidth, xl: torch.Tensor, yl: torch.Tensor, pair_names=None,
                     checks: DeferredChecks | None = None) -> int:
    """-1 for no band; otherwise w after checking w >= min_bandwidth for every pair."""
    if bandwidth is None:
        return -1
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
        raise TypeError(f"bandwidth must be None or a non-negative int, got {type(bandwidth).__name__}")
    if not math.isfinite(bandwidth) or bandwidth < 0:
        raise ValueError(f"bandwidth must be None or >= 0, got {bandwidth}")
    w = int(math.floor(bandwidth))
    if w >= 2**31 - 1:
        # wider than any sequence: a band of at least max(n, m) - 1 excludes no cell, and
        # no index arithmetic of the backends need see a number past int32
        return -1

    def precise():
        for p, (n, m) in enumerate(zip(xl.tolist(), yl.tolist())):
            need = ref.min_bandwidth(n, m)
            if w < need:
                who = pair_names(p) if pair_names is not None else f"pair {p}"
                raise ValueError(
                    f"bandwidth={w} is narrower than the minimum {need} for {who} with lengths "
                    f"(n={n}, m={m}): the band follows the diagonal from (1, 1) to (n, m) and needs "
                    f"w >= {need} to keep a monotone path; use bandwidth >= {need} or None")

    _defer(checks, (_min_bandwidths(xl, yl) > w).any(), precise)
    return w


def _check_pair(x: torch.Tensor, y: torch.Tensor, *, same_batch: bool, finite: bool = True,
                checks: DeferredChecks | None = None) -> None:
    check_tensor("x", x, ndims=(3,))
    check_tensor("y", y, ndims=(3,))
    if same_batch and x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y must have the same feature size D, got {x.shape[2]} and {y.shape[2]}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on one device, got {x.device} and {y.device}")
    if finite:
        for name, t in (("x", x), ("y", y)):
            if checks is None:
                check_finite(name, t)
            else:
                checks.finite(name, t)


def _check_cost_arg(cost) -> None:
    if callable(cost):
        return
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS} or a callable, got {cost!r}")


def _check_features(x: torch.Tensor, y: torch.Tensor, cost, x_lengths: Lengths, y_lengths: Lengths,
                    checks: DeferredChecks, *, same_batch: bool,
                    finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The checks every feature-level entry point runs first -> per-sequence lengths (xl, yl)
    on x's device. finite=False leaves the NaN/Inf check to the caller (`_finite_features`).
    Value checks go to `checks`, which the caller runs (one sync) before any kernel."""
    _check_pair(x, y, same_batch=same_batch, finite=finite, checks=checks)
    _check_cost_arg(cost)
    _check_cost_range(x, y, cost, checks)
    return (_check_lengths("x_lengths", x_lengths, x.shape[0], x.shape[1], x.device, checks),
            _check_lengths("y_lengths", y_lengths, y.shape[0], y.shape[1], x.device, checks))


def _dp_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_cost_range(x: torch.Tensor, y: torch.Tensor, cost, checks: DeferredChecks) -> None:
    """Refuse features whose soft-DTW cannot be represented in the DP's dtype (float32, or
    float64 for float64 features): a bound on every cost entry times the longest path
    must stay below the dtype's max. |x_i − y_j|² ≤ D·(max|x| + max|y|)², |x_i·y_j| ≤
    D·max|x|·max|y|, 1 − cos ≤ 2; 2(N+M)+1 cells bound a path of soft-DTW and of S2DTW's
    (2N+1) × (2M+1) weak-alignment matrix. A callable cost's output is checked instead."""
    if callable(cost) or cost == "cosine":
        return
    dt = _dp_dtype(x)
    ax = x.detach().abs().amax().to(torch.float64)
    ay = y.detach().abs().amax().to(torch.float64)
    d, path = x.shape[-1], 2 * (x.shape[1] + y.shape[1]) + 1
    bound = d * (ax + ay) ** 2 if cost == "sqeuclidean" else d * ax * ay

    def precise():
        more = " or pass float64 features" if dt == torch.float32 else ""
        raise ValueError(
            f"x and y are too large for soft-DTW in {dt}: with max |x| = {float(ax):.3g} and max |y| = "
            f"{float(ay):.3g} the {cost} cost can reach {float(bound):.3g}, and its sum over a path of up "
            f"to {path} cells passes {dt}'s largest value {torch.finfo(dt).max:.3g}; scale the features "
            f"down{more}, or use cost='cosine'")

    # a non-finite input is the NaN/Inf check's to report; a bound that overflows float64
    # from finite inputs is past any dtype's max (so `<=` is False for it)
    checks.add(torch.isfinite(ax) & torch.isfinite(ay) & ~(bound * path <= torch.finfo(dt).max), precise)


def _check_cost_values(C: torch.Tensor, checks: DeferredChecks) -> None:
    """Refuse a cost whose DP sum could pass the dtype's max: max |C| times the longest
    path (N + M − 1 cells) must be representable."""
    dt = _dp_dtype(C)
    cmax = C.detach().abs().amax().to(torch.float64)
    path = C.shape[-2] + C.shape[-1] - 1

    def precise():
        raise ValueError(f"C is too large for soft-DTW in {dt}: entries up to {float(cmax):.3g} summed over "
                         f"a path of up to {path} cells pass {dt}'s largest value {torch.finfo(dt).max:.3g}; "
                         "scale the cost down" + (" or pass a float64 cost" if dt == torch.float32 else ""))

    checks.add(torch.isfinite(cmax) & ~(cmax * path <= torch.finfo(dt).max), precise)


def _check_cost_inputs(C: torch.Tensor, gamma: Gamma, bandwidth, x_lengths: Lengths, y_lengths: Lengths):
    """Every check of the cost-tensor entry points, value checks resolved with one host sync
    -> (γ, xl, yl, band) for C `[B, N, M]` (lengths on C's device)."""
    check_tensor("C", C, ndims=(3,))
    checks = DeferredChecks()
    checks.finite("C", C)
    _check_cost_values(C, checks)
    B, N, M = C.shape
    g = _check_gamma(gamma, B, checks=checks)
    xl = _check_lengths("x_lengths", x_lengths, B, N, C.device, checks)
    yl = _check_lengths("y_lengths", y_lengths, B, M, C.device, checks)
    w = _check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()
    return g, xl, yl, w


# ==================================================================== costs
@full_precision_matmul()
def gemm_cost(x: torch.Tensor, y: torch.Tensor, sq: bool, offset: float, pairwise: bool) -> torch.Tensor:
    """The cost of `_GemmCost` without autograd (see there for the shapes)."""
    # Fold the norms / offset into the GEMM (two extra columns): C comes out of one
    # product with no further pass over [.., N, M] except the clamp.
    if sq:
        xa = torch.cat([x, (x * x).sum(-1, keepdim=True), torch.ones_like(x[..., :1])], -1)
        ya = torch.cat([-2 * y, torch.ones_like(y[..., :1]), (y * y).sum(-1, keepdim=True)], -1)
    elif offset != 0.0:
        xa = torch.cat([x, torch.ones_like(x[..., :1])], -1)
        ya = torch.cat([-y, torch.full_like(y[..., :1], offset)], -1)
    else:
        xa, ya = x, -y
    if pairwise:
        B1, N, Da = xa.shape
        B2, M, _ = ya.shape
        C = torch.mm(xa.reshape(B1 * N, Da), ya.reshape(B2 * M, Da).T).view(B1, N, B2, M)
        if sq:
            C.clamp_min_(0)
        return C.permute(0, 2, 1, 3)
    C = torch.bmm(xa, ya.transpose(1, 2))
    if sq:
        C.clamp_min_(0)
    return C


class _GemmCost(torch.autograd.Function):
    """C from one GEMM, gradients by GEMMs; no [N, M, D] tensor and no saved [N, M] one.

    sq=True: C = |x|² + |y|² − 2x·yᵀ clamped at 0 (rounding only; the gradient is that
    of |x − y|²). sq=False: C = offset − x·yᵀ. pairwise=False: x [B, N, D], y [B, M, D]
    -> [B, N, M]; pairwise=True: x [B1, N, D], y [B2, M, D] -> [B1, B2, N, M] (a strided
    view of one [B1·N, B2·M] product).
    """

    @staticmethod
    def forward(ctx, x, y, sq: bool, offset: float, pairwise: bool):
        ctx.save_for_backward(x, y)
        ctx.sq, ctx.pairwise = sq, pairwise
        return gemm_cost(x, y, sq, offset, pairwise)

    @staticmethod
    @full_precision_matmul()
    def backward(ctx, G):
        x, y = ctx.saved_tensors
        gx = gy = None
        if ctx.pairwise:  # G [B1, B2, N, M] -> [B1·N, B2·M]
            B1, N, D = x.shape
            B2, M, _ = y.shape
            G2 = G.permute(0, 2, 1, 3).reshape(B1 * N, B2 * M)
            xf, yf = x.reshape(B1 * N, D), y.reshape(B2 * M, D)
            if ctx.needs_input_grad[0]:
                gx = -(G2 @ yf)
                if ctx.sq:
                    gx = 2 * (gx + G2.sum(1, keepdim=True) * xf)
                gx = gx.view(B1, N, D)
            if ctx.needs_input_grad[1]:
                gy = -(G2.T @ xf)
                if ctx.sq:
                    gy = 2 * (gy + G2.sum(0)[:, None] * yf)
                gy = gy.view(B2, M, D)
            return gx, gy, None, None, None
        if ctx.needs_input_grad[0]:
            gx = -torch.bmm(G, y)
            if ctx.sq:
                gx = 2 * (gx + G.sum(2, keepdim=True) * x)
        if ctx.needs_input_grad[1]:
            gy = -torch.bmm(G.transpose(1, 2), x)
            if ctx.sq:
                gy = 2 * (gy + G.sum(1)[:, :, None] * y)
        return gx, gy, None, None, None


def _unit(x: torch.Tensor) -> torch.Tensor:
    return unit_rows(x, x.dtype)


def pairwise_cost(x: torch.Tensor, y: torch.Tensor, cost: CostArg = "sqeuclidean", *,
                  pairwise: bool = False) -> torch.Tensor:
    """Cost matrices from features, differentiable w.r.t. x and y.

    pairwise=False: x [B, N, D], y [B, M, D] -> C [B, N, M].
    pairwise=True:  x [B1, N, D], y [B2, M, D] -> C [B1, B2, N, M] (a strided view).
    A callable cost gets batched [P, N, D] / [P, M, D] tensors (for pairwise, the
    B1·B2 pairs, expanded without copying where the callable allows) and must return
    [P, N, M].
    """
    if callable(cost):
        if pairwise:
            B1, B2 = x.shape[0], y.shape[0]
            xe = x[:, None].expand(B1, B2, *x.shape[1:]).reshape(B1 * B2, *x.shape[1:])
            ye = y[None].expand(B1, B2, *y.shape[1:]).reshape(B1 * B2, *y.shape[1:])
            C = cost(xe, ye)
            _check_callable_out(C, (B1 * B2, x.shape[1], y.shape[1]))
            return C.view(B1, B2, x.shape[1], y.shape[1])
        C = cost(x, y)
        _check_callable_out(C, (x.shape[0], x.shape[1], y.shape[1]))
        return C
    if cost == "sqeuclidean":
        return _GemmCost.apply(x, y, True, 0.0, pairwise)
    if cost == "negdot":
        return _GemmCost.apply(x, y, False, 0.0, pairwise)
    if cost == "cosine":
        return _GemmCost.apply(_unit(x), _unit(y), False, 1.0, pairwise)
    raise ValueError(f"cost must be one of {COSTS} or a callable, got {cost!r}")


def _check_callable_out(C, shape) -> None:
    if not isinstance(C, torch.Tensor):
        raise TypeError(f"a callable cost must return a tensor, got {type(C).__name__}")
    if tuple(C.shape) != tuple(shape):
        raise ValueError(f"a callable cost must return shape {tuple(shape)}, got {tuple(C.shape)}")
    check_finite("cost(x, y)", C)


# ============================================================ torch backend
def _torch_valid(N: int, M: int, xl: torch.Tensor, yl: torch.Tensor, w: int, device) -> torch.Tensor:
    """Bool [P, N, M]: inside the pair's block and band."""
    i = torch.arange(N, device=device)[None, :, None]
    j = torch.arange(M, device=device)[None, None, :]
    n = xl.to(device)[:, None, None]
    m = yl.to(device)[:, None, None]
    ok = (i < n) & (j < m)
    if w >= 0:
        band = (i * (m - 1) - j * (n - 1)).abs() <= w * (torch.minimum(n, m) - 1)
        ok &= band | (torch.minimum(n, m) == 1)
    return ok


def _torch_forward(C: torch.Tensor, gamma: torch.Tensor, xl: torch.Tensor, yl: torch.Tensor, w: int):
    """Anti-diagonal recurrence in torch ops (vectorised over pairs and each diagonal) ->
    (values [P], state [P, 2·(N+2)·(M+2)]): as in the C++ and Triton kernels, the state is
    the soft-min weight each cell gave its up and its left predecessor (padded layout;
    the diagonal one is 1 minus both; w_up = -1 marks a cell at +inf). Weights rebuilt
    from R in the backward would carry R's rounding over γ."""
    P, N, M = C.shape
    dev = C.device
    inf = float("inf")
    valid = _torch_valid(N, M, xl, yl, w, dev)
    R = torch.full((P, N + 2, M + 2), inf, dtype=C.dtype, device=dev)
    R[:, 0, 0] = 0
    Wt = torch.zeros(P, 2, N + 2, M + 2, dtype=C.dtype, device=dev)
    g = gamma[:, None]
    for d in range(N + M - 1):
        i = torch.arange(max(0, d - M + 1), min(N - 1, d) + 1, device=dev)
        j = d - i
        v = torch.stack([R[:, i, j], R[:, i, j + 1], R[:, i + 1, j]])  # diagonal, up, left
        mn = v.min(0).values
        fin = torch.isfinite(mn)
        sh = torch.where(fin, mn, torch.zeros_like(mn))
        e = torch.exp(-(v - sh) / g)
        s = torch.where(fin, e.sum(0), torch.ones_like(mn))
        val = C[:, i, j] + sh - g * torch.log(s)
        live = valid[:, i, j] & fin & (val < inf)
        R[:, i + 1, j + 1] = torch.where(live, val, torch.full_like(val, inf))
        Wt[:, 0, i + 1, j + 1] = torch.where(live, e[1] / s, torch.full_like(val, -1.0))
        Wt[:, 1, i + 1, j + 1] = torch.where(live, e[2] / s, torch.zeros_like(val))
    ar = torch.arange(P, device=dev)
    values = R[ar, xl.to(dev), yl.to(dev)]
    return values, Wt.reshape(P, -1)


def _torch_backward(C, state, gamma, xl, yl, w):
    """E [P, N, M] by the backward recurrence over the forward's weights; successors outside
    block/band weigh 0."""
    P, N, M = C.shape
    dev = C.device
    Wt = state.view(P, 2, N + 2, M + 2)
    valid = _torch_valid(N, M, xl, yl, w, dev)
    Vp = torch.zeros(P, N + 2, M + 2, dtype=torch.bool, device=dev)
    Vp[:, 1:N + 1, 1:M + 1] = valid
    w_up = torch.where(Vp, Wt[:, 0].clamp(min=0), 0)
    w_left = torch.where(Vp, Wt[:, 1], 0)
    w_diag = torch.where(Vp & (Wt[:, 0] >= 0), (1 - Wt[:, 0] - Wt[:, 1]).clamp(min=0), 0)
    E = torch.zeros(P, N + 2, M + 2, dtype=C.dtype, device=dev)
    xl_d, yl_d = xl.to(dev)[:, None], yl.to(dev)[:, None]
    for d in range(N + M - 2, -1, -1):
        i = torch.arange(max(0, d - M + 1), min(N - 1, d) + 1, device=dev)
        j = d - i
        I, J = i + 1, j + 1
        acc = (E[:, I + 1, J] * w_up[:, I + 1, J] + E[:, I, J + 1] * w_left[:, I, J + 1]
               + E[:, I + 1, J + 1] * w_diag[:, I + 1, J + 1])
        end = (I[None] == xl_d) & (J[None] == yl_d)
        E[:, I, J] = torch.where(end, torch.ones_like(acc), torch.where(valid[:, i, j], acc, torch.zeros_like(acc)))
    return E[:, 1:N + 1, 1:M + 1].contiguous()


# =========================================================== custom ops
def _triton_module():
    try:
        from vtalign.kernels import soft_dtw as tk
    except ImportError as e:  # pragma: no cover - only without the Triton kernels
        raise RuntimeError(f"backend='triton' needs vtalign.kernels.soft_dtw, which failed to import: {e}") from e
    for fn in ("soft_dtw_forward", "soft_dtw_backward", "soft_dtw_layout"):
        if not hasattr(tk, fn):
            raise RuntimeError(f"backend='triton': vtalign.kernels.soft_dtw has no {fn}() launcher")
    return tk


def _r_slots(P: int, N: int, M: int, bandwidth: int, dtype: torch.dtype, backend: str) -> int:
    """Elements per pair of the state the forward saves for the backward (backend-specific)."""
    if backend == "triton":
        return _triton_module().soft_dtw_layout(N, M, bandwidth)[3]
    if backend == "cpp":
        return int(cpp().soft_dtw_state_slots(P, N, M, dtype == torch.float64))
    return 2 * (N + 2) * (M + 2)


@torch.library.custom_op("vtalign::soft_dtw_fwd", mutates_args=())
def _fwd_op(C: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor,
            bandwidth: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """C [P1, P2, N, M] (any strides with a unit last one) -> (values [P1·P2], R [P1·P2, S])."""
    P1, P2, N, M = C.shape
    P = P1 * P2
    if backend == "cpp":
        values = torch.empty(P, dtype=C.dtype)
        R = torch.empty(P, _r_slots(P, N, M, bandwidth, C.dtype, backend), dtype=C.dtype)
        cpp().soft_dtw_forward(C.detach().numpy(), gamma.detach().contiguous().numpy(),
                               x_len.contiguous().numpy(), y_len.contiguous().numpy(), bandwidth,
                               values.numpy(), R.numpy())
        return values, R
    C3 = C.reshape(P, N, M)
    if backend == "triton":
        return _triton_module().soft_dtw_forward(C3.contiguous(), gamma, x_len, y_len, bandwidth)
    return _torch_forward(C3, gamma, x_len, y_len, bandwidth)


@_fwd_op.register_fake
def _(C, gamma, x_len, y_len, bandwidth, backend):
    P1, P2, N, M = C.shape
    return C.new_empty(P1 * P2), C.new_empty(P1 * P2, _r_slots(P1 * P2, N, M, bandwidth, C.dtype, backend))


@torch.library.custom_op("vtalign::soft_dtw_bwd", mutates_args=())
def _bwd_op(C: torch.Tensor, R: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
            y_len: torch.Tensor, bandwidth: int, grad: torch.Tensor,
            backend: str, need_ec: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (grad·E [P1, P2, N, M] contiguous, ⟨E, C⟩ [P1·P2] float64), E = ∂value/∂C.
    ⟨E, C⟩ (for the γ-gradient) is zeros unless `need_ec`."""
    P1, P2, N, M = C.shape
    P = P1 * P2
    if backend == "cpp":
        E = torch.empty(P1, P2, N, M, dtype=C.dtype)
        EC = torch.empty(P, dtype=torch.float64)
        cpp().soft_dtw_backward(C.detach().numpy(), R.detach().contiguous().numpy(),
                                gamma.detach().contiguous().numpy(), x_len.contiguous().numpy(),
                                y_len.contiguous().numpy(), bandwidth,
                                grad.detach().to(C.dtype).contiguous().numpy(), E.numpy(), EC.numpy())
        return E, EC
    C3 = C.reshape(P, N, M)
    if backend == "triton":
        E3 = _triton_module().soft_dtw_backward(C3.contiguous(), R, gamma, x_len, y_len, bandwidth)
    else:
        E3 = _torch_backward(C3, R, gamma, x_len, y_len, bandwidth)
    EC = _inner_f64(E3, C3) if need_ec else torch.zeros(P, dtype=torch.float64, device=C.device)
    E3 = E3 * grad.to(E3.dtype)[:, None, None]
    return E3.reshape(P1, P2, N, M).contiguous(), EC


def _inner_f64(E3: torch.Tensor, C3: torch.Tensor, budget: int = 64 << 20) -> torch.Tensor:
    """⟨E_p, C_p⟩ per pair in float64 (the γ-gradient value − ⟨E, C⟩ cancels at small γ),
    a few pairs at a time so the float64 copies stay within `budget` bytes."""
    P, N, M = E3.shape
    step = max(1, budget // max(1, 16 * N * M))
    return torch.cat([(E3[p:p + step].double() * C3[p:p + step].double()).sum((1, 2)) for p in range(0, P, step)])


@_bwd_op.register_fake
def _(C, R, gamma, x_len, y_len, bandwidth, grad, backend, need_ec):
    P1, P2, N, M = C.shape
    return C.new_empty(P1, P2, N, M), C.new_empty(P1 * P2, dtype=torch.float64)


def _setup_context(ctx, inputs, output):
    C, gamma, x_len, y_len, bandwidth, backend = inputs
    values, R = output
    ctx.save_for_backward(C, R, gamma, x_len, y_len, values)
    ctx.bandwidth, ctx.backend = bandwidth, backend
    ctx.mark_non_differentiable(R)
    ctx.set_materialize_grads(False)  # else autograd zero-fills a gradient for R: a pass over [P, S]


def _fwd_backward(ctx, g_values, g_R):
    C, R, gamma, x_len, y_len, values = ctx.saved_tensors
    if g_values is None:
        g_values = torch.zeros_like(values)
    E, EC = _bwd_op(C, R, gamma, x_len, y_len, ctx.bandwidth, g_values.contiguous(), ctx.backend,
                    bool(ctx.needs_input_grad[1]))
    gC = E if ctx.needs_input_grad[0] else None
    gg = None
    if ctx.needs_input_grad[1]:
        gg = g_values * (values - EC.to(values.dtype)) / gamma
    return gC, gg, None, None, None, None


_fwd_op.register_autograd(_fwd_backward, setup_context=_setup_context)


# ================================================================= dispatch
def _triton_gap(*ts: torch.Tensor) -> tuple[type[Exception], str] | None:
    """The Triton DP runs in float32 (half inputs are upcast): float64 would be rounded,
    so "auto" takes the torch backend for it on CUDA and an explicit "triton" refuses it."""
    if any(t.dtype == torch.float64 for t in ts):
        return TypeError, "computes in float32 and would round these float64 inputs"
    return None


def _compute_dtype(C: torch.Tensor, backend: str) -> torch.dtype:
    if backend == "triton":
        return torch.float32
    return torch.float64 if C.dtype == torch.float64 else torch.float32


def _gamma_vector(gamma: Gamma, P1: int, P2: int, dtype, device) -> torch.Tensor:
    """γ as a [P1·P2] tensor (differentiable when γ is a tensor): a 0-d γ is shared,
    a [B] γ (only with P2 == 1) is per pair."""
    if isinstance(gamma, torch.Tensor):
        g = gamma.to(device=device, dtype=dtype)
        if g.dim() == 0:
            return g.expand(P1 * P2).contiguous()
        return g.reshape(P1 * P2)
    return torch.full((P1 * P2,), float(gamma), dtype=dtype, device=device)


def _run(C4: torch.Tensor, gamma: Gamma, xl: torch.Tensor, yl: torch.Tensor, w: int,
         backend: str) -> torch.Tensor:
    """values [P1·P2] for a checked C4 [P1, P2, N, M] and per-pair lengths (int64, on C4's
    device)."""
    P1, P2, N, M = C4.shape
    dt = _compute_dtype(C4, backend)
    C4 = C4.to(dt)
    if C4.stride(-1) != 1 or backend != "cpp":
        C4 = C4.contiguous()
    g = _gamma_vector(gamma, P1, P2, dt, C4.device)
    dev = C4.device
    values, _ = _fwd_op(C4, g, xl.to(dev), yl.to(dev), int(w), backend)
    return values


def _reference_values(C3: torch.Tensor, gamma: Gamma, xl, yl, w: int) -> torch.Tensor:
    g = gamma.double() if isinstance(gamma, torch.Tensor) else gamma
    return ref.soft_dtw_cost(C3, g, bandwidth=None if w < 0 else w, x_lengths=xl.tolist(),
                             y_lengths=yl.tolist())


# =================================================================== public
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
    g, xl, yl, w = _check_cost_inputs(C, gamma, bandwidth, x_lengths, y_lengths)
    be = resolve_backend(backend, [C] + ([g] if isinstance(g, torch.Tensor) else []), triton_unsupported=_triton_gap(C))
    if be == "reference":
        return _reference_values(C, g, xl, yl, w)
    return _run(C[None], g, xl, yl, w, be)


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
    xl, yl = _check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True, finite=False)
    be = resolve_backend(backend, [x, y], triton_unsupported=_triton_gap(x, y))
    xn, yn = _finite_features(x, y, cost, be, checks)
    B = x.shape[0]
    g = _check_gamma(gamma, B, checks=checks)
    w = _check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()  # the call's one host sync: every value check above, before any kernel
    if be == "reference":
        gg = g.double() if isinstance(g, torch.Tensor) else g
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
    dt = _compute_dtype(x, backend)
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    if not (backend == "cpp" and cost == "sqeuclidean" and fused.fused_available(B, N, M, dt)):
        checks.finite("x", x)
        checks.finite("y", y)
        return None, None
    norms = []
    for name, t in (("x", x), ("y", y)):
        n = fused.sq_norms(t.to(dt))
        # raises unless the norms merely overflowed
        checks.add(~torch.isfinite(n.sum()), lambda name=name, t=t: check_finite(name, t))
        norms.append(n)
    return norms[0], norms[1]


def _run_features(x: torch.Tensor, y: torch.Tensor, cost: CostArg, gamma: Gamma, xl: torch.Tensor,
                  yl: torch.Tensor, w: int, backend: str, xn: torch.Tensor | None = None,
                  yn: torch.Tensor | None = None) -> torch.Tensor:
    """values [B] for checked features; the fused C++ path when it applies (_soft_dtw_fused).
    xn, yn: the squared row norms when the caller has them (`_finite_features`)."""
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    dt = _compute_dtype(x, backend)
    if backend == "cpp" and not callable(cost) and fused.fused_available(B, N, M, dt):
        if cost == "cosine":
            x, y = _unit(x), _unit(y)
        sq, offset = cost == "sqeuclidean", 1.0 if cost == "cosine" else 0.0
        x, y = x.to(dt), y.to(dt)
        if sq:
            xn = fused.sq_norms(x) if xn is None else xn
            yn = fused.sq_norms(y) if yn is None else yn
        else:
            xn = yn = x.new_empty(0)
        g = _gamma_vector(gamma, B, 1, dt, x.device)
        return fused.FeatureSoftDTW.apply(x, y, g, xl, yl, int(w), sq, offset, xn, yn)
    return _run(pairwise_cost(x, y, cost)[None], gamma, xl, yl, w, backend)


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
    xl, yl = _check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=False)
    B1, B2 = x.shape[0], y.shape[0]
    g = _check_gamma(gamma, 1, checks=checks)
    pxl = xl[:, None].expand(B1, B2).reshape(-1)
    pyl = yl[None, :].expand(B1, B2).reshape(-1)
    w = _check_bandwidth(bandwidth, pxl, pyl,
                         pair_names=lambda p: f"pair (x[{p // B2}], y[{p % B2}])", checks=checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=_triton_gap(x, y))
    if be == "reference":
        gg = g.double() if isinstance(g, torch.Tensor) else g
        return ref.soft_dtw_pairwise(x, y, gg, cost=cost, bandwidth=None if w < 0 else w,
                                     x_lengths=xl.tolist(), y_lengths=yl.tolist(), normalize=normalize)
    v = _run(pairwise_cost(x, y, cost, pairwise=True), g, pxl, pyl, w, be).view(B1, B2)
    if not normalize:
        return v
    vxx = _run(pairwise_cost(x, x, cost)[None], g, xl, xl, w, be)
    vyy = _run(pairwise_cost(y, y, cost)[None], g, yl, yl, w, be)
    return v - 0.5 * (vxx[:, None] + vyy[None, :])


def _alignment(C4: torch.Tensor, g: Gamma, xl, yl, w: int, be: str) -> torch.Tensor:
    P1, P2, N, M = C4.shape
    if be == "reference":
        gg = g.detach().double() if isinstance(g, torch.Tensor) else g
        return ref.soft_dtw_alignment(C4.reshape(P1 * P2, N, M), gg, bandwidth=None if w < 0 else w,
                                      x_lengths=xl.tolist(), y_lengths=yl.tolist())
    dt = _compute_dtype(C4, be)
    C4 = C4.detach().to(dt).contiguous()
    gv = _gamma_vector(g.detach() if isinstance(g, torch.Tensor) else g, P1, P2, dt, C4.device)
    dev = C4.device
    _, R = _fwd_op(C4, gv, xl.to(dev), yl.to(dev), int(w), be)
    E, _ = _bwd_op(C4, R, gv, xl.to(dev), yl.to(dev), int(w), torch.ones(P1 * P2, dtype=dt, device=dev), be,
                   False)
    return E.reshape(P1 * P2, N, M)


def soft_dtw_alignment_cost(C: torch.Tensor, gamma: Gamma = 1.0, *, bandwidth: int | None = None,
                            x_lengths: Lengths = None, y_lengths: Lengths = None,
                            backend: str = "auto") -> torch.Tensor:
    """Expected alignment E = ∂ soft_dtw_cost / ∂C, `[B, N, M]` (not differentiable).

    E is 0 outside each pair's block and band; E[n_b−1, m_b−1] = 1 and every
    anti-diagonal of the block carries mass between 0 and 1.
    """
    g, xl, yl, w = _check_cost_inputs(C, gamma, bandwidth, x_lengths, y_lengths)
    be = resolve_backend(backend, [C], triton_unsupported=_triton_gap(C))
    with torch.no_grad():
        return _alignment(C[None], g, xl, yl, w, be)


def soft_dtw_alignment(x: torch.Tensor, y: torch.Tensor, gamma: Gamma = 1.0, *,
                       cost: CostArg = "sqeuclidean", bandwidth: int | None = None,
                       x_lengths: Lengths = None, y_lengths: Lengths = None,
                       backend: str = "auto") -> torch.Tensor:
    """Expected alignment E `[B, N, M]` between x `[B, N, D]` and y `[B, M, D]`
    (E = ∂ soft_dtw / ∂C for the chosen cost; not differentiable)."""
    checks = DeferredChecks()
    xl, yl = _check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True)
    B = x.shape[0]
    g = _check_gamma(gamma, B, checks=checks)
    w = _check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=_triton_gap(x, y))
    with torch.no_grad():
        C = ref.pairwise_cost(x, y, cost) if be == "reference" else pairwise_cost(x, y, cost)
        return _alignment(C[None], g, xl, yl, w, be)


# ==================================================================== S2DTW
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
    g = _check_gamma(gamma, B, checks=checks)
    gs = _check_gamma(smoothing_gamma, B, "smoothing_gamma")
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
    xl, yl = _check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=True)
    B = x.shape[0]
    g, gs = _check_s2dtw_args(gamma, smoothing_gamma, null_cost, B, checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=_triton_gap(x, y))
    if be == "reference":
        gg = g.double() if isinstance(g, torch.Tensor) else g
        return ref.s2dtw(x, y, gamma=gg, smoothing_gamma=gs, null_cost=null_cost, cost=cost,
                         x_lengths=xl.tolist(), y_lengths=yl.tolist())
    W = s2dtw_matrix(pairwise_cost(x, y, cost), gs, null_cost)
    return _run(W[None], g, 2 * xl + 1, 2 * yl + 1, -1, be)


def s2dtw_pairwise(x: torch.Tensor, y: torch.Tensor, *, gamma: Gamma = 0.1, smoothing_gamma: float = 0.1,
                   null_cost: float = 0.5, cost: CostArg = "negdot", x_lengths: Lengths = None,
                   y_lengths: Lengths = None, backend: str = "auto") -> torch.Tensor:
    """S2DTW for every pair (x[a], y[b]) -> `[B1, B2]`: one GEMM for all costs, one DP run."""
    checks = DeferredChecks()
    xl, yl = _check_features(x, y, cost, x_lengths, y_lengths, checks, same_batch=False)
    B1, N = x.shape[0], x.shape[1]
    B2, M = y.shape[0], y.shape[1]
    g, gs = _check_s2dtw_args(gamma, smoothing_gamma, null_cost, 1, checks)
    checks.run()  # the call's one host sync
    be = resolve_backend(backend, [x, y], triton_unsupported=_triton_gap(x, y))
    if be == "reference":
        gg = g.double() if isinstance(g, torch.Tensor) else g
        return ref.s2dtw_pairwise(x, y, gamma=gg, smoothing_gamma=gs, null_cost=null_cost, cost=cost,
                                  x_lengths=xl.tolist(), y_lengths=yl.tolist())
    C = pairwise_cost(x, y, cost, pairwise=True).reshape(B1 * B2, N, M)
    W = s2dtw_matrix(C, gs, null_cost).view(B1, B2, 2 * N + 1, 2 * M + 1)
    pxl = (2 * xl + 1)[:, None].expand(B1, B2).reshape(-1)
    pyl = (2 * yl + 1)[None, :].expand(B1, B2).reshape(-1)
    return _run(W, g, pxl, pyl, -1, be).view(B1, B2)


__all__ = [
    "COSTS", "min_bandwidth", "pairwise_cost", "soft_dtw", "soft_dtw_cost", "soft_dtw_pairwise",
    "soft_dtw_alignment", "soft_dtw_alignment_cost", "s2dtw", "s2dtw_matrix", "s2dtw_pairwise",
]
