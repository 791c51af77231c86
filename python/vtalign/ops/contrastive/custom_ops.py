"""The contrastive custom ops (`vtalign::infonce`, `vtalign::slot_infonce` and their
backward ops) with fake kernels and autograd; "triton" runs kernels/contrastive.py, the
other backends `chunked_torch`."""
from __future__ import annotations

import torch

from vtalign.ops.contrastive.chunked_torch import (
    cpu_infonce_backward,
    cpu_infonce_forward,
    cpu_slot_backward,
    cpu_slot_forward,
)


def _zeros_like_stats(t: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(n, dtype=like.dtype, device=like.device) if t is None else t.to(like.dtype)


@torch.library.custom_op("vtalign::infonce", mutates_args=())
def infonce_op(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor | None,
                offset: int, rows: bool, cols: bool, backend: str, workspace: int, precision: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.infonce_forward(a, b, scale, positives, offset, rows, cols, precision=precision)
    return cpu_infonce_forward(a, b, scale.to(a.dtype), positives, offset, rows, cols, workspace)


@infonce_op.register_fake
def _(a, b, scale, positives, offset, rows, cols, backend, workspace, precision):
    dt = torch.float64 if a.dtype == torch.float64 else torch.float32
    n, m = a.shape[0], b.shape[0]
    return (a.new_empty((n,), dtype=dt), a.new_empty((m,), dtype=dt), a.new_empty((2, n), dtype=dt),
            a.new_empty((2, m), dtype=dt))


@torch.library.custom_op("vtalign::infonce_backward", mutates_args=())
def infonce_backward_op(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                         positives: torch.Tensor | None, offset: int, rows: bool, cols: bool,
                         row_stats: torch.Tensor, col_stats: torch.Tensor, g_row: torch.Tensor,
                         g_col: torch.Tensor, backend: str, workspace: int, precision: str
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.infonce_backward(a, b, scale, positives, offset, rows, cols, row_stats, col_stats,
                                   g_row, g_col, precision=precision)
    da, db, ds = cpu_infonce_backward(a, b, scale.to(a.dtype), positives, offset, rows, cols, row_stats,
                                       col_stats, g_row.to(a.dtype), g_col.to(a.dtype), workspace)
    return da, db, ds.to(scale.dtype)


@infonce_backward_op.register_fake
def _(a, b, scale, positives, offset, rows, cols, row_stats, col_stats, g_row, g_col, backend, workspace,
      precision):
    return torch.empty_like(a), torch.empty_like(b), torch.empty_like(scale)


def _setup_infonce(ctx, inputs, output):
    a, b, scale, positives, offset, rows, cols, backend, workspace, precision = inputs
    ctx.save_for_backward(a, b, scale, positives, output[2], output[3])
    ctx.cfg = (offset, rows, cols, backend, workspace, precision)


def _infonce_backward(ctx, g_rl, g_cl, _g_rs, _g_cs):
    a, b, scale, positives, row_stats, col_stats = ctx.saved_tensors
    offset, rows, cols, backend, workspace, precision = ctx.cfg
    g_rl = _zeros_like_stats(g_rl, a.shape[0], row_stats)
    g_cl = _zeros_like_stats(g_cl, b.shape[0], col_stats)
    da, db, ds = infonce_backward_op(a, b, scale, positives, offset, rows, cols, row_stats, col_stats,
                                      g_rl, g_cl, backend, workspace, precision)
    return da, db, ds, None, None, None, None, None, None, None


infonce_op.register_autograd(_infonce_backward, setup_context=_setup_infonce)


@torch.library.custom_op("vtalign::slot_infonce", mutates_args=())
def slot_op(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
             positives: torch.Tensor | None, offset: int, rows: bool, cols: bool, pool: str, tau: float,
             backend: str, workspace: int, precision: str
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.slot_forward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau,
                               precision=precision)
    return cpu_slot_forward(ta, vb, valid, scale.to(ta.dtype), positives, offset, rows, cols, pool, tau,
                             workspace)


@slot_op.register_fake
def _(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, backend, workspace, precision):
    dt = torch.float64 if ta.dtype == torch.float64 else torch.float32
    n, m = ta.shape[0], vb.shape[0]
    return (ta.new_empty((n,), dtype=dt), ta.new_empty((m,), dtype=dt), ta.new_empty((2, n), dtype=dt),
            ta.new_empty((2, m), dtype=dt))


@torch.library.custom_op("vtalign::slot_infonce_backward", mutates_args=())
def slot_backward_op(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
                      positives: torch.Tensor | None, offset: int, rows: bool, cols: bool, pool: str,
                      tau: float, row_stats: torch.Tensor, col_stats: torch.Tensor, g_row: torch.Tensor,
                      g_col: torch.Tensor, backend: str, workspace: int, precision: str
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.slot_backward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats,
                                col_stats, g_row, g_col, precision=precision)
    dta, dvb, ds = cpu_slot_backward(ta, vb, valid, scale.to(ta.dtype), positives, offset, rows, cols, pool,
                                      tau, row_stats, col_stats, g_row.to(ta.dtype), g_col.to(ta.dtype),
                                      workspace)
    return dta, dvb, ds.to(scale.dtype)


@slot_backward_op.register_fake
def _(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats, col_stats, g_row, g_col,
      backend, workspace, precision):
    return torch.empty_like(ta), torch.empty_like(vb), torch.empty_like(scale)


def _setup_slot(ctx, inputs, output):
    ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, backend, workspace, precision = inputs
    ctx.save_for_backward(ta, vb, valid, scale, positives, output[2], output[3])
    ctx.cfg = (offset, rows, cols, pool, tau, backend, workspace, precision)


def _slot_backward(ctx, g_rl, g_cl, _g_rs, _g_cs):
    ta, vb, valid, scale, positives, row_stats, col_stats = ctx.saved_tensors
    offset, rows, cols, pool, tau, backend, workspace, precision = ctx.cfg
    g_rl = _zeros_like_stats(g_rl, ta.shape[0], row_stats)
    g_cl = _zeros_like_stats(g_cl, vb.shape[0], col_stats)
    dta, dvb, ds = slot_backward_op(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau,
                                     row_stats, col_stats, g_rl, g_cl, backend, workspace, precision)
    return dta, dvb, None, ds, None, None, None, None, None, None, None, None, None


slot_op.register_autograd(_slot_backward, setup_context=_setup_slot)
