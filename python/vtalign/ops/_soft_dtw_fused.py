"""Soft-DTW from features on the C++ backend in one fused forward+backward call.

Why: on a CPU the unfused chain (cost GEMM → DP forward writing its state →
DP backward reading it back and writing E → E scaled by the incoming gradient →
gradient GEMM) streams about four [B, N, M] matrices through memory more than
needed, and at B = 32, N = M = 256 that traffic costs more than the DP. Here the
DP runs forward and backward at once (its state stays in a per-thread slab), E
is kept unscaled, and the incoming gradient is applied to the [B, N, D] result
of the gradient GEMM instead of the [B, N, M] matrix. Row and column sums of E
come out of the kernel, so the squared-Euclidean gradient needs no extra pass.

Used by `vtalign.soft_dtw` for backend "cpp" when the batch has at least one
full lane group (16 float / 8 double pairs) and the slab fits
`FUSED_SLAB_LIMIT`; everything else takes the custom-op path in soft_dtw.py.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import cpp

FUSED_SLAB_LIMIT = 32 * 2**20  # per-thread scratch of one lane group, bytes

LANES = {torch.float32: 16, torch.float64: 8}


def fused_available(P: int, N: int, M: int, dtype: torch.dtype) -> bool:
    """Whether `soft_dtw_fused` takes P pairs of [N, M] in `dtype` (C++ backend)."""
    if dtype not in LANES or P < LANES[dtype]:
        return False
    return int(cpp().soft_dtw_fused_slab_bytes(N, M, dtype == torch.float64)) <= FUSED_SLAB_LIMIT


@torch.library.custom_op("vtalign::soft_dtw_fused", mutates_args=())
def _fused_op(D: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor,
              bandwidth: int, need_grad: bool, need_ec: bool, alpha: float, offset: float, clamp: bool,
              xnorm: torch.Tensor, ynorm: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft-DTW on C = alpha·D + xnorm[:, :, None] + ynorm[:, None, :] + offset (clamped at 0
    when clamp; empty norms are 0) for D [P, N, M] -> values [P], E [P, N, M] (= ∂value/∂C),
    ⟨E, C⟩ [P] float64 (only with need_ec: the γ gradient's; else 0 or, for the pairs
    outside lane groups, computed anyway), row sums [P, N] and column sums [P, M] of E;
    the last four are empty without need_grad."""
    P, N, M = D.shape
    k = 1 if need_grad else 0
    values = torch.empty(P, dtype=D.dtype)
    E = torch.empty(k * P, N, M, dtype=D.dtype)
    EC = torch.empty(k * P, dtype=torch.float64)
    rows = torch.empty(k * P, N, dtype=D.dtype)
    cols = torch.empty(k * P, M, dtype=D.dtype)
    cpp().soft_dtw_fused(D.detach()[None].numpy(), gamma.detach().contiguous().numpy(),
                         x_len.contiguous().numpy(), y_len.contiguous().numpy(), bandwidth, need_grad,
                         need_ec, alpha, offset, clamp, xnorm.detach().contiguous().numpy(),
                         ynorm.detach().contiguous().numpy(), values.numpy(), E.numpy(), EC.numpy(),
                         rows.numpy(), cols.numpy())
    return values, E, EC, rows, cols


@_fused_op.register_fake
def _(D, gamma, x_len, y_len, bandwidth, need_grad, need_ec, alpha, offset, clamp, xnorm, ynorm):
    P, N, M = D.shape
    k = 1 if need_grad else 0
    return (D.new_empty(P), D.new_empty(k * P, N, M), D.new_empty(k * P, dtype=torch.float64),
            D.new_empty(k * P, N), D.new_empty(k * P, M))


class FeatureSoftDTW(torch.autograd.Function):
    """values [B] for x [B, N, D], y [B, M, D]; gradients to x, y and γ [B].

    sq=True: cost |x_i − y_j|² (clamped at 0 against rounding); sq=False: offset − x_i·y_j.
    Only x·yᵀ is a GEMM: the norms, the offset and the clamp are applied by the kernel
    as it reads each row, and the backward uses the closed-form gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
                y_len: torch.Tensor, bandwidth: int, sq: bool, offset: float):
        need_grad = any(ctx.needs_input_grad[:3])
        dot = torch.bmm(x, y.transpose(1, 2))
        empty = x.new_empty(0)
        xn = (x * x).sum(-1) if sq else empty
        yn = (y * y).sum(-1) if sq else empty
        values, E, EC, rows, cols = _fused_op(dot, gamma, x_len, y_len, int(bandwidth), need_grad,
                                              ctx.needs_input_grad[2], -2.0 if sq else -1.0, 0.0 if sq else float(offset), sq,
                                              xn, yn)
        del dot  # not kept: the backward needs only E and its sums
        if need_grad:
            ctx.save_for_backward(x, y, gamma, values, E, EC, rows, cols)
        ctx.sq = sq
        return values

    @staticmethod
    def backward(ctx, g_values: torch.Tensor):
        x, y, gamma, values, E, EC, rows, cols = ctx.saved_tensors
        s = g_values[:, None, None].to(x.dtype)
        gx = gy = gg = None
        # ∂/∂x of Σ E·|x − y|² is 2(rowsum(E)·x − E·y); of Σ E·(offset − x·y) it is −E·y.
        # One GEMM with the elementwise term as its addend, then one in-place scale.
        if ctx.needs_input_grad[0]:
            if ctx.sq:
                gx = torch.baddbmm(rows[:, :, None] * x, E, y, alpha=-1).mul_(2 * s)
            else:
                gx = torch.bmm(E, y).mul_(-s)
        if ctx.needs_input_grad[1]:
            Et = E.transpose(1, 2)
            if ctx.sq:
                gy = torch.baddbmm(cols[:, :, None] * y, Et, x, alpha=-1).mul_(2 * s)
            else:
                gy = torch.bmm(Et, x).mul_(-s)
        if ctx.needs_input_grad[2]:
            gg = g_values * (values - EC.to(values.dtype)) / gamma
        return gx, gy, gg, None, None, None, None, None
