"""Soft-DTW from features on the C++ backend in one fused forward+backward call.

Why: on a CPU the unfused chain (cost GEMM → DP forward writing its state →
DP backward reading it back and writing E → E scaled by the incoming gradient →
gradient GEMM) streams about four [B, N, M] matrices through memory more than
needed, and at B = 32, N = M = 256 that traffic costs more than the DP. Here the
DP runs forward and backward at once (its state stays in a per-thread slab), E
is kept unscaled, and the incoming gradient is applied to the [B, N, D] result
of the gradient GEMM instead of the [B, N, M] matrix. Row and column sums of E
come out of the kernel, so the squared-Euclidean gradient needs no extra pass.

Used by `vtalign.soft_dtw` for backend "cpp" when `fused_available` says so (full
lane groups whose slab fits `FUSED_SLAB_LIMIT`, or at least one pair per thread
on the pair path); everything else takes the custom-op path in soft_dtw.py.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import cpp

FUSED_SLAB_LIMIT = 32 * 2**20  # per-thread scratch of one lane group, bytes

def lane_width(dtype: torch.dtype) -> int:
    """Pairs per C++ lane group for `dtype` (16 float32 / 8 float64), 0 when the build has
    no lane kernels (they need AVX-512) or the dtype has none."""
    if dtype not in (torch.float32, torch.float64):
        return 0
    return int(cpp().soft_dtw_lane_width(dtype == torch.float64))


def fused_available(P: int, N: int, M: int, dtype: torch.dtype) -> bool:
    """Whether `soft_dtw_fused` takes P pairs of [N, M] in `dtype` (C++ backend): full lane
    groups while their per-thread slab fits `FUSED_SLAB_LIMIT` (past it, the unfused lane
    path, with its state in one buffer, is still the fastest); without a full group, one
    pair per thread on the pair path. Fewer pairs than threads take the custom-op path,
    whose threads share each pair's diagonals."""
    if dtype not in (torch.float32, torch.float64):
        return False
    width = lane_width(dtype)
    if width and P >= width:
        return int(cpp().soft_dtw_fused_slab_bytes(N, M, dtype == torch.float64)) <= FUSED_SLAB_LIMIT
    return not bool(cpp().soft_dtw_team_mode(P, N, M))


def _fused_impl(D: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor,
              bandwidth: int, need_grad: bool, need_ec: bool, alpha: float, offset: float, clamp: bool,
              xnorm: torch.Tensor, ynorm: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft-DTW on C = alpha·D + xnorm[:, :, None] + ynorm[:, None, :] + offset (clamped at 0
    when clamp; empty norms are 0) for a contiguous D [P, N, M] -> values [P], ⟨E, C⟩ [P]
    float64 (only with need_ec: the γ gradient's; else 0 or, for the pairs outside lane
    groups, computed anyway), row sums [P, N] and column sums [P, M] of E = ∂value/∂C.
    With need_grad, D is overwritten by E (its GEMM buffer is not needed afterwards, and
    reusing it saves a [P, N, M] allocation); without it, D is left as is and the last
    three outputs are empty."""
    P, N, M = D.shape
    k = 1 if need_grad else 0
    values = torch.empty(P, dtype=D.dtype)
    EC = torch.empty(k * P, dtype=torch.float64)
    rows = torch.empty(k * P, N, dtype=D.dtype)
    cols = torch.empty(k * P, M, dtype=D.dtype)
    d = D.detach()[None].numpy()
    cpp().soft_dtw_fused(d, gamma.detach().contiguous().numpy(),
                         x_len.contiguous().numpy(), y_len.contiguous().numpy(), bandwidth, need_grad,
                         need_ec, alpha, offset, clamp, xnorm.detach().contiguous().numpy(),
                         ynorm.detach().contiguous().numpy(), values.numpy(),
                         d if need_grad else D.new_empty(0).numpy(), EC.numpy(), rows.numpy(), cols.numpy())
    return values, EC, rows, cols


# The op is what torch.compile traces (fake shapes, the mutation of D). Eager calls
# from FeatureSoftDTW go straight to the implementation: the custom-op dispatch costs
# about 0.2 ms a call (a few % of a B = 32, N = M = 256 step) and imports torch._dynamo
# on its first call (1.4 s here).
_fused_op = torch.library.custom_op("vtalign::soft_dtw_fused", mutates_args=("D",))(_fused_impl)


@_fused_op.register_fake
def _(D, gamma, x_len, y_len, bandwidth, need_grad, need_ec, alpha, offset, clamp, xnorm, ynorm):
    P, N, M = D.shape
    k = 1 if need_grad else 0
    return (D.new_empty(P), D.new_empty(k * P, dtype=torch.float64), D.new_empty(k * P, N),
            D.new_empty(k * P, M))


def sq_norms(t: torch.Tensor) -> torch.Tensor:
    """Σ_d t[..., d]² for a float32/float64 t `[..., D]` -> `[...]`, in one pass (C++; torch
    ops under torch.compile, which cannot trace a pybind call)."""
    t = t.detach()
    if torch.compiler.is_compiling():
        return (t * t).sum(-1)
    t = t.contiguous()
    out = t.new_empty(t.shape[:-1])
    cpp().row_sqnorms(t.numpy(), out.numpy())
    return out


def _combine(G: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rows, x: torch.Tensor) -> torch.Tensor:
    """G = a·G + b·rows·x per pair, in place on G `[P, N, D]` (a, b `[P]`, rows `[P, N]`)."""
    if torch.compiler.is_compiling():
        G.mul_(a[:, None, None])
        return G if rows is None else G.addcmul_((b[:, None] * rows)[:, :, None], x)
    rows_np = rows.contiguous().numpy() if rows is not None else G.new_empty(0).numpy()
    cpp().grad_combine(G.numpy(), a.numpy(), b.numpy(), rows_np, x.detach().contiguous().numpy())
    return G


class FeatureSoftDTW(torch.autograd.Function):
    """values [B] for x [B, N, D], y [B, M, D]; gradients to x, y and γ [B].

    sq=True: cost |x_i − y_j|² (clamped at 0 against rounding), with xn [B, N] and
    yn [B, M] the squared row norms (`sq_norms`); sq=False: offset − x_i·y_j, with
    xn, yn empty. Only x·yᵀ is a GEMM: the norms, the offset and the clamp are
    applied by the kernel as it reads each row, and the backward uses the
    closed-form gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
                y_len: torch.Tensor, bandwidth: int, sq: bool, offset: float, xn: torch.Tensor,
                yn: torch.Tensor):
        need_grad = any(ctx.needs_input_grad[:3])
        dot = torch.bmm(x, y.transpose(1, 2))
        op = _fused_op if torch.compiler.is_compiling() else _fused_impl
        values, EC, rows, cols = op(dot, gamma, x_len, y_len, int(bandwidth), need_grad, ctx.needs_input_grad[2],
                                    -2.0 if sq else -1.0, 0.0 if sq else float(offset), sq, xn, yn)
        if need_grad:  # dot now holds E
            ctx.save_for_backward(x, y, gamma, values, dot, EC, rows, cols)
        ctx.sq = sq
        return values

    @staticmethod
    def backward(ctx, g_values: torch.Tensor):
        x, y, gamma, values, E, EC, rows, cols = ctx.saved_tensors
        s = g_values.to(x.dtype).contiguous()
        gx = gy = gg = None
        # ∂/∂x of Σ E·|x − y|² is 2(rowsum(E)·x − E·y); of Σ E·(offset − x·y) it is −E·y:
        # one GEMM, then one in-place pass over [B, N, D] (grad_combine).
        a, b = (-2 * s if ctx.sq else -s), 2 * s
        if ctx.needs_input_grad[0]:
            gx = _combine(torch.bmm(E, y), a, b, rows if ctx.sq else None, x)
        if ctx.needs_input_grad[1]:
            gy = _combine(torch.bmm(E.transpose(1, 2), x), a, b, cols if ctx.sq else None, y)
        if ctx.needs_input_grad[2]:
            gg = g_values * (values - EC.to(values.dtype)) / gamma
        return gx, gy, gg, None, None, None, None, None, None, None
