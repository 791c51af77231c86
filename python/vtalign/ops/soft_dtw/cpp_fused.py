"""Soft-DTW from features on the C++ backend in one fused forward+backward call.

Why: on a CPU the unfused chain (cost GEMM → DP forward writing its state →
DP backward reading it back and writing E → E scaled by the incoming gradient →
gradient GEMM) streams about four [B, N, M] matrices through memory more than
needed, and at B = 32, N = M = 256 that traffic costs more than the DP. Here the
DP runs forward and backward at once (its state stays in a per-thread slab), E
is written over the cost GEMM's buffer, and the gradient GEMMs run right away:
what is saved for the backward is the unscaled [B, N, D] / [B, M, D] gradients,
which the incoming gradient scales, not the [B, N, M] E (at N = M = 2048,
D = 64 that is 32x less memory held between forward and backward). Row and
column sums of E come out of the kernel, so the squared-Euclidean gradient
needs no extra pass.

Used by `vtalign.soft_dtw` for backend "cpp" when `fused_available` says so (full
lane groups whose slab fits `FUSED_SLAB_LIMIT`, or at least one pair per thread
on the pair path); everything else takes the custom-op path (`custom_ops.py`).
"""
from __future__ import annotations

import threading

import torch

from vtalign.ops._common import cpp, eager_op

FUSED_SLAB_LIMIT = 32 * 2**20  # per-thread scratch of one lane group, bytes

# The dispatch below is plain Python over module constants of the C++ build, so that
# torch.compile traces it; pybind calls were graph breaks, with a Dynamo warning each.
# tests/soft_dtw/test_lanes.py checks these mirrors against the C++ rules.
def lane_width(dtype: torch.dtype) -> int:
    """Pairs per C++ lane group for `dtype` (16 float32 / 8 float64), 0 when the build has
    no lane kernels (they need AVX-512) or the dtype has none."""
    if dtype not in (torch.float32, torch.float64):
        return 0
    return cpp().soft_dtw_lane_widths[1 if dtype == torch.float64 else 0]


def slab_bytes(N: int, M: int, dtype: torch.dtype) -> int:
    """Per-thread scratch of one lane group of [N, M] pairs: two weights per cell plus a
    zero column, per lane (csrc/soft_dtw_cpp_fused.cpp: fused_slab_bytes)."""
    return lane_width(dtype) * 2 * N * (M + 1) * torch.finfo(dtype).bits // 8


def team_mode(P: int, N: int, M: int) -> bool:
    """Whether P pairs of [N, M] are too few for a pair per thread, so that the threads share
    each pair's diagonals (csrc/soft_dtw_pair.h: team_mode; OpenMP's thread count is torch's)."""
    return P < torch.get_num_threads() and N * M >= cpp().soft_dtw_team_min_cells


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
        return slab_bytes(N, M, dtype) <= FUSED_SLAB_LIMIT
    return not team_mode(P, N, M)


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
# from FeatureSoftDTW go straight to the implementation (`eager_op`): the custom-op dispatch costs
# about 0.2 ms a call (a few % of a B = 32, N = M = 256 step) and imports torch._dynamo
# on its first call (1.4 s here).
_fused_op = torch.library.custom_op("vtalign::soft_dtw_fused", mutates_args=("D",))(_fused_impl)


@_fused_op.register_fake
def _(D, gamma, x_len, y_len, bandwidth, need_grad, need_ec, alpha, offset, clamp, xnorm, ynorm):
    P, N, M = D.shape
    k = 1 if need_grad else 0
    return (D.new_empty(P), D.new_empty(k * P, dtype=torch.float64), D.new_empty(k * P, N),
            D.new_empty(k * P, M))


_fused = eager_op(_fused_op, _fused_impl)


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


# The [P, N, M] GEMM buffer (cost, then E) is per-thread scratch kept across calls up to
# this size: allocated fresh, glibc hands back memory it had returned to the OS, and on
# this VM faulting 8 MiB in again (2k faults) cost 2-3 ms of a 6 ms B = 32 step.
GEMM_SCRATCH_LIMIT = 32 * 2**20
_local = threading.local()


def _gemm_buffer(P: int, N: int, M: int, dtype: torch.dtype) -> torch.Tensor:
    """A [P, N, M] buffer that must not outlive the FeatureSoftDTW.forward using it."""
    n = P * N * M
    if torch.compiler.is_compiling() or n * torch.finfo(dtype).bits // 8 > GEMM_SCRATCH_LIMIT:
        return torch.empty(P, N, M, dtype=dtype)
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(dtype)
    if buf is None or buf.numel() < n:
        buf = bufs[dtype] = torch.empty(n, dtype=dtype)
    return buf[:n].view(P, N, M)


class FeatureSoftDTW(torch.autograd.Function):
    """values [B] for x [B, N, D], y [B, M, D]; gradients to x, y and γ [B].

    sq=True: cost |x_i − y_j|² (clamped at 0 against rounding), with xn [B, N] and
    yn [B, M] the squared row norms (`sq_norms`); sq=False: offset − x_i·y_j, with
    xn, yn empty. Only x·yᵀ is a GEMM: the norms, the offset and the clamp are
    applied by the kernel as it reads each row. The gradients w.r.t. x and y are
    closed-form in E and made in the forward, unscaled ([B, N, D] and [B, M, D] are
    what is saved, not E [B, N, M]); the backward scales them per pair.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
                y_len: torch.Tensor, bandwidth: int, sq: bool, offset: float, xn: torch.Tensor,
                yn: torch.Tensor):
        need_grad = any(ctx.needs_input_grad[:3])
        dot = torch.bmm(x, y.transpose(1, 2), out=_gemm_buffer(x.shape[0], x.shape[1], y.shape[1], x.dtype))
        values, EC, rows, cols = _fused(dot, gamma, x_len, y_len, int(bandwidth), need_grad, ctx.needs_input_grad[2],
                                   -2.0 if sq else -1.0, 0.0 if sq else float(offset), sq, xn, yn)
        gx = gy = x.new_empty(0)
        if need_grad:  # dot now holds E.
            # ∂/∂x of Σ E·|x − y|² is 2(rowsum(E)·x − E·y); of Σ E·(offset − x·y) it is −E·y:
            # one GEMM, then one in-place pass over [B, N, D] (grad_combine).
            P = x.shape[0]
            a, b = x.new_full((P,), -2.0 if sq else -1.0), x.new_full((P,), 2.0)
            if ctx.needs_input_grad[0]:
                gx = _combine(torch.bmm(dot, y), a, b, rows if sq else None, x)
            if ctx.needs_input_grad[1]:
                gy = _combine(torch.bmm(dot.transpose(1, 2), x), a, b, cols if sq else None, y)
            ctx.save_for_backward(gx, gy, gamma, values, EC)
        return values

    @staticmethod
    def backward(ctx, g_values: torch.Tensor):
        gx, gy, gamma, values, EC = ctx.saved_tensors
        s = g_values.to(gx.dtype)[:, None, None]
        gg = None
        if ctx.needs_input_grad[2]:
            gg = g_values * (values - EC.to(values.dtype)) / gamma
        return (gx * s if ctx.needs_input_grad[0] else None, gy * s if ctx.needs_input_grad[1] else None, gg,
                None, None, None, None, None, None, None)
