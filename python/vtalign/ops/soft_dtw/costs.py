"""Soft-DTW cost matrices from one GEMM, with gradients by GEMMs (`GemmCost`)."""
from __future__ import annotations

import torch

from vtalign.ops._common import check_finite, full_precision_matmul, unit_rows
from vtalign.ops.soft_dtw.checks import COSTS, CostArg


@full_precision_matmul()
def gemm_cost(x: torch.Tensor, y: torch.Tensor, sq: bool, offset: float, pairwise: bool) -> torch.Tensor:
    """The cost of `GemmCost` without autograd (see there for the shapes)."""
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


class GemmCost(torch.autograd.Function):
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
        return GemmCost.apply(x, y, True, 0.0, pairwise)
    if cost == "negdot":
        return GemmCost.apply(x, y, False, 0.0, pairwise)
    if cost == "cosine":
        return GemmCost.apply(unit_rows(x), unit_rows(y), False, 1.0, pairwise)
    raise ValueError(f"cost must be one of {COSTS} or a callable, got {cost!r}")


def _check_callable_out(C, shape) -> None:
    if not isinstance(C, torch.Tensor):
        raise TypeError(f"a callable cost must return a tensor, got {type(C).__name__}")
    if tuple(C.shape) != tuple(shape):
        raise ValueError(f"a callable cost must return shape {tuple(shape)}, got {tuple(C.shape)}")
    check_finite("cost(x, y)", C)
