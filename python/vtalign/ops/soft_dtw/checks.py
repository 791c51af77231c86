"""Soft-DTW input checks: the band rule, γ, lengths, the cost range; value checks deferred
to one host sync per call (`DeferredChecks`)."""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import torch

from vtalign.ops._common import DeferredChecks, check_finite, check_tensor
from vtalign.reference import soft_dtw as ref

COSTS = ("sqeuclidean", "cosine", "negdot")
CostArg = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Lengths = torch.Tensor | Sequence[int] | None
Gamma = float | torch.Tensor


def min_bandwidth(n: int, m: int) -> int:
    """Smallest Sakoe–Chiba half-width w that keeps cell (n, m) reachable from (1, 1).

    The band for lengths (n, m) is |(i−1)(m−1) − (j−1)(n−1)| <= w·(min(n,m)−1)
    (for n = m exactly |i − j| <= w). With p = max−1, q = min−1, g = gcd(p, q),
    the largest jump between consecutive band columns is ceil((q − g + p)/q)
    cells and a half-width w spans 2w + 1 of them. 0 for equal lengths; it grows
    with the slope max(n,m)/min(n,m).
    """
    return ref.min_bandwidth(int(n), int(m))


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


def check_gamma(gamma, B: int, name: str = "gamma", checks: DeferredChecks | None = None) -> Gamma:
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


def check_lengths(name: str, lengths: Lengths, B: int, full: int, device: torch.device | None = None,
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


def min_bandwidths(xl: torch.Tensor, yl: torch.Tensor) -> torch.Tensor:
    """`min_bandwidth(n, m)` for every pair, in torch ops on the lengths' device (no sync).
    Lengths below 1 (rejected by their own check) are taken as 1, so nothing divides by 0."""
    n, m = xl.clamp_min(1), yl.clamp_min(1)
    p, q = torch.maximum(n, m) - 1, torch.minimum(n, m) - 1
    qs = q.clamp_min(1)
    g = torch.gcd(p, qs)
    gap = -torch.div(-(qs - g + p), qs, rounding_mode="floor")  # ceil((q - g + p) / q)
    need = (-torch.div(-(gap - 1), 2, rounding_mode="floor")).clamp_min(0)  # ceil((gap - 1) / 2)
    return torch.where(q == 0, torch.zeros_like(need), need)


def check_bandwidth(bandwidth, xl: torch.Tensor, yl: torch.Tensor, pair_names=None,
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

    _defer(checks, (min_bandwidths(xl, yl) > w).any(), precise)
    return w


def check_pair(x: torch.Tensor, y: torch.Tensor, *, same_batch: bool, finite: bool = True,
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


def check_features(x: torch.Tensor, y: torch.Tensor, cost, x_lengths: Lengths, y_lengths: Lengths,
                    checks: DeferredChecks, *, same_batch: bool,
                    finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The checks every feature-level entry point runs first -> per-sequence lengths (xl, yl)
    on x's device. finite=False leaves the NaN/Inf check to the caller (`_finite_features`).
    Value checks go to `checks`, which the caller runs (one sync) before any kernel."""
    check_pair(x, y, same_batch=same_batch, finite=finite, checks=checks)
    _check_cost_arg(cost)
    _check_cost_range(x, y, cost, checks)
    return (check_lengths("x_lengths", x_lengths, x.shape[0], x.shape[1], x.device, checks),
            check_lengths("y_lengths", y_lengths, y.shape[0], y.shape[1], x.device, checks))


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


def check_cost_inputs(C: torch.Tensor, gamma: Gamma, bandwidth, x_lengths: Lengths, y_lengths: Lengths):
    """Every check of the cost-tensor entry points, value checks resolved with one host sync
    -> (γ, xl, yl, band) for C `[B, N, M]` (lengths on C's device)."""
    check_tensor("C", C, ndims=(3,))
    checks = DeferredChecks()
    checks.finite("C", C)
    _check_cost_values(C, checks)
    B, N, M = C.shape
    g = check_gamma(gamma, B, checks=checks)
    xl = check_lengths("x_lengths", x_lengths, B, N, C.device, checks)
    yl = check_lengths("y_lengths", y_lengths, B, M, C.device, checks)
    w = check_bandwidth(bandwidth, xl, yl, checks=checks)
    checks.run()
    return g, xl, yl, w
