"""Contrastive losses (DESIGN.md §3.3, §3.5): checks, backend choice, custom ops, CPU path.

Both losses reduce to one core, `infonce`, over a similarity S[N, M] that is never
stored whole: the forward keeps, per row, log Σ_j e^{s_ij} and the log-sum over the
row's positives (and the same per column, online across row chunks), and the backward
recomputes S chunk by chunk to form dL/dS and the gradients. Memory is O((N+M)·D) plus
one chunk (`max_workspace_bytes`).

CPU ("cpp" and "torch" both land here): chunked torch, one BLAS product per chunk
forward and three backward (recompute, dA, dB). The products dominate the time, so a
C++ twin would only re-implement BLAS; the elementwise work per chunk is done in place.
GPU: kernels/contrastive.py (flash-style tiles, online log-sum-exp, recomputing backward).

The frame-slot loss with pool="mean" is linear in the frames, so it is the plain
InfoNCE on flattened `[N, T·D]` rows (video rows weighted by valid/|V_j|) and uses
the same core; "max" and "lse" pools use a slot core that loops over T per chunk.
"""
from __future__ import annotations

import math

import torch

from vtalign.ops._common import (
    DeferredChecks,
    check_same_device,
    check_tensor,
    resolve_backend,
    triton_dtype_gap,
    unit_rows,
)
from vtalign.reference import contrastive as ref

DEFAULT_WORKSPACE = 64 << 20  # a few [chunk, B] tiles; larger chunks amortise per-op overhead
REDUCTIONS = ("mean", "sum", "none")
POOLS = ("mean", "max", "lse")
MIN_POOL_TEMPERATURE = 1e-30


def _compute_dtype(*ts: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


def _unit(x: torch.Tensor, dtype: torch.dtype, backend: str) -> torch.Tensor:
    """Scale-safe L2-normalised rows (differentiable). Triton keeps fp16/bf16 inputs in
    their dtype (normalised in fp32 first) so its dots run on the low-precision tensor cores."""
    if backend == "triton" and x.dtype in (torch.float16, torch.bfloat16):
        return unit_rows(x)
    return unit_rows(x, dtype)


def _rows_per_chunk(m: int, per_elem_bytes: int, workspace: int) -> int:
    return max(1, int(workspace) // max(1, m * per_elem_bytes))


def _diag_cells(offset: int, r0: int, r1: int, m: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Local row and global column of the single positive j = i + offset in rows r0:r1."""
    rows = torch.arange(r0, r1, device=device)
    cols = rows + offset
    ok = (cols >= 0) & (cols < m)
    return rows[ok] - r0, cols[ok]


# ----------------------------------------------------------------------------- CPU core
# Each chunk of logits is touched as few times as possible: the products dominate,
# but on a CPU every extra elementwise pass over a [chunk, M] tile costs about as
# much as a small fraction of a product. Row statistics take a max, one exp and a
# sum; the column sums come from the same exponentials through a matrix-vector
# product (below), and the backward forms both softmax terms from one exp.
_SAFE_SPREAD = 60.0  # e^-60 keeps ~27 orders of magnitude above fp32's smallest normal e^-87


class _ColumnLSE:
    """Online log-sum-exp down the columns across row chunks (optionally masked)."""

    def __init__(self, m: int, dtype, device):
        self.mx = torch.full((m,), float("-inf"), dtype=dtype, device=device)
        self.sum = torch.zeros(m, dtype=dtype, device=device)

    def add(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        new = torch.maximum(self.mx, s.amax(0))
        # a column with nothing seen yet stays at -inf; shift it by 0 so no inf - inf appears
        shift = torch.where(torch.isinf(new), torch.zeros_like(new), new)
        self.sum.mul_(torch.exp(self.mx - shift)).add_(torch.exp(s - shift).sum(0))
        self.mx = new

    def add_sums(self, shift: torch.Tensor, sums: torch.Tensor) -> None:
        """Fold column sums Σ_i e^{s_ij − shift} of one chunk (one scalar shift)."""
        new = torch.maximum(self.mx, shift.expand_as(self.mx))
        self.sum.mul_(torch.exp(self.mx - new)).add_(sums * torch.exp(shift - new))
        self.mx = new

    def value(self) -> torch.Tensor:
        shift = torch.where(torch.isinf(self.mx), torch.zeros_like(self.mx), self.mx)
        return torch.log(self.sum) + shift


def _cpu_forward(tile_fn, n: int, m: int, max_logit: float, positives, offset: int, rows: bool,
                 cols: bool, chunk: int, dtype, device):
    """Shared forward: `tile_fn(r0, r1, out) -> s [r1-r0, m]`, the scaled logits of rows r0:r1.

    Column sums: with row maxima m_i and E_ij = e^{s_ij − m_i} (already needed for the
    rows), Σ_i e^{s_ij − c} = Σ_i e^{m_i − c}·E_ij is one matrix-vector product, for the
    chunk maximum c. Terms it loses to underflow are below e^{c−87}; it is used only when
    every column's maximum is within _SAFE_SPREAD of c (always so when 2·max_logit <=
    _SAFE_SPREAD, max_logit bounding every |s|: the caller's bound, e.g. scale·max‖a‖·max‖b‖),
    which keeps the loss below 1e-11 relative; otherwise a second exp pass.
    """
    row_stats = torch.zeros(2, n, dtype=dtype, device=device)
    col_stats = torch.zeros(2, m, dtype=dtype, device=device)
    all_cols = _ColumnLSE(m, dtype, device) if cols else None
    pos_cols = _ColumnLSE(m, dtype, device) if cols and positives is not None else None
    always_safe = 2.0 * max_logit <= _SAFE_SPREAD
    s_buf = torch.empty(min(chunk, n) * m, dtype=dtype, device=device)
    e_buf = torch.empty(min(chunk, n) * m, dtype=dtype, device=device)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        s = tile_fn(r0, r1, s_buf[:(r1 - r0) * m].view(r1 - r0, m))
        mx = s.amax(1)
        e = torch.sub(s, mx[:, None], out=e_buf[:(r1 - r0) * m].view(r1 - r0, m)).exp_()
        if rows:
            row_stats[0, r0:r1] = mx + torch.log(e.sum(1))
            if positives is not None:
                row_stats[1, r0:r1] = torch.logsumexp(s.masked_fill(~positives[r0:r1], float("-inf")), 1)
        if positives is None:  # one positive per row/column: its log-sum is the logit itself
            li, gj = _diag_cells(offset, r0, r1, m, s.device)
            d = s[li, gj]
            if rows:
                row_stats[1, li + r0] = d
            if cols:
                col_stats[1, gj] = d
        if cols:
            c = mx.max()
            if always_safe or float(c - s.amax(0).min()) <= _SAFE_SPREAD:
                all_cols.add_sums(c, torch.mv(e.T, torch.exp(mx - c)))
            else:
                all_cols.add(s)
            if pos_cols is not None:
                pos_cols.add(s, positives[r0:r1])
    if cols:
        col_stats[0] = all_cols.value()
        if pos_cols is not None:
            col_stats[1] = pos_cols.value()
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _outer_factors(row_stats, col_stats, g_col):
    """(u, g_c·v) with e^{lse_r,i − lse_c,j} = u_i·v_j, or None when the factors could overflow.

    Splitting at the midpoint K of all log-sum-exps keeps u = e^{lse_r − K} and
    v = e^{K − lse_c} within e^{±40} when the statistics span at most 80.
    """
    lo = torch.minimum(row_stats[0].min(), col_stats[0].min())
    hi = torch.maximum(row_stats[0].max(), col_stats[0].max())
    if float(hi - lo) > 80.0:
        return None
    k = 0.5 * (hi + lo)
    return torch.exp(row_stats[0] - k), g_col * torch.exp(k - col_stats[0])


def _grad_logits(s: torch.Tensor, positives, offset: int, r0: int, r1: int, rows: bool, cols: bool,
                 row_stats, col_stats, g_row, g_col, factors=None, h_buf=None) -> torch.Tensor:
    """dL/ds for rows r0:r1 of s (overwrites s). Row part g_i·(softmax_i − softmax over P(i)),
    column part likewise with the column statistics.

    With `factors` (single positives, both directions): the column softmax is the row
    softmax times u_i·v_j, so dL/ds = P ⊙ (g_r + u ⊗ g_c v) − diagonal: one exp pass.
    """
    m = s.shape[1]
    pos = positives[r0:r1] if positives is not None else None
    out = None
    if factors is not None and pos is None and rows and cols:
        u, gv = factors
        s.sub_(row_stats[0, r0:r1, None]).exp_()
        h = h_buf[:s.numel()].view_as(s) if h_buf is not None else torch.empty_like(s)
        torch.addr(g_row[r0:r1, None].expand_as(s), u[r0:r1], gv, out=h)
        out = s.mul_(h)
    else:
        if cols:
            e = s - col_stats[0][None, :]
            e.exp_().mul_(g_col[None, :])
            if pos is not None:
                p = (s - col_stats[1][None, :]).exp_().mul_(g_col[None, :])
                e.sub_(p.masked_fill_(~pos, 0.0))
            out = e
        if rows:
            if pos is not None:
                p = (s - row_stats[1, r0:r1, None]).exp_().mul_(g_row[r0:r1, None]).masked_fill_(~pos, 0.0)
            s.sub_(row_stats[0, r0:r1, None]).exp_().mul_(g_row[r0:r1, None])
            if pos is not None:
                s.sub_(p)
            out = s if out is None else out.add_(s)
    if pos is None:  # the single positive: softmax over {j} is 1
        li, gj = _diag_cells(offset, r0, r1, m, out.device)
        corr = torch.zeros(len(li), dtype=out.dtype, device=out.device)
        if rows:
            corr += g_row[li + r0]
        if cols:
            corr += g_col[gj]
        out[li, gj] -= corr
    return out


def _cpu_infonce_forward(a, b, scale, positives, offset, rows, cols, workspace):
    n, m = a.shape[0], b.shape[0]
    chunk = _rows_per_chunk(m, 3 * a.element_size(), workspace)
    bt = b.T
    # |s_ij| <= |scale|·‖a_i‖·‖b_j‖ (Cauchy-Schwarz): the rows need not be unit (normalize=False)
    max_logit = abs(float(scale)) * float(torch.linalg.vector_norm(a, dim=1).max()) * float(
        torch.linalg.vector_norm(b, dim=1).max())
    # the scale goes into the [chunk, D] rows, not the [chunk, M] tile
    return _cpu_forward(lambda r0, r1, out: torch.mm(a[r0:r1] * scale, bt, out=out), n, m, max_logit,
                        positives, offset, rows, cols, chunk, a.dtype, a.device)


def _cpu_infonce_backward(a, b, scale, positives, offset, rows, cols, row_stats, col_stats, g_row, g_col,
                          workspace):
    n, m = a.shape[0], b.shape[0]
    chunk = _rows_per_chunk(m, 3 * a.element_size(), workspace)
    da = torch.empty_like(a)
    db = torch.zeros_like(b)
    factors = _outer_factors(row_stats, col_stats, g_col) if positives is None and rows and cols else None
    s_buf = torch.empty(min(chunk, n) * m, dtype=a.dtype, device=a.device)
    h_buf = torch.empty(min(chunk, n) * m, dtype=a.dtype, device=a.device) if factors is not None else None
    bt = b.T
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        s = torch.mm(a[r0:r1] * scale, bt, out=s_buf[:(r1 - r0) * m].view(r1 - r0, m))
        g = _grad_logits(s, positives, offset, r0, r1, rows, cols, row_stats, col_stats, g_row, g_col,
                         factors, h_buf)
        torch.mm(g, b, out=da[r0:r1]).mul_(scale)
        db.addmm_(g.T, a[r0:r1], alpha=float(scale))
    # Σ_ij dL/ds_ij · cos_ij = Σ_i <da_i, a_i> / scale: no extra pass over the tiles
    dscale = torch.dot(da.reshape(-1), a.reshape(-1)) / scale
    return da, db, dscale


def _pool_frames(cos: torch.Tensor, valid: torch.Tensor, pool: str, tau: float, *, weights: bool = False):
    """cos [T, r, M] (frame-major), valid [M, T] -> pooled [r, M] over the valid frames of column j.

    With `weights`, also d pooled / d cos `[T, r, M]`: the one-hot of the first maximum
    ("max"), or the softmax of cos/τ over the valid frames ("lse").
    """
    vt = valid.T[:, None, :]
    if pool == "max":
        best = cos.masked_fill(~vt, float("-inf")).max(0)
        if not weights:
            return best.values
        frames = torch.arange(cos.shape[0], device=cos.device)[:, None, None]
        return best.values, (frames == best.indices[None]).to(cos.dtype)
    count = valid.sum(1).to(cos.dtype)
    z = cos.masked_fill(~vt, float("-inf")).div_(tau)
    lse = torch.logsumexp(z, 0)
    pooled = tau * (lse - torch.log(count)[None, :])
    if not weights:
        return pooled
    return pooled, z.sub_(lse[None]).exp_()


def _slot_chunk(m: int, t: int, itemsize: int, workspace: int) -> int:
    return _rows_per_chunk(m, (2 * t + 3) * itemsize, workspace)


def _cpu_slot_forward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, workspace):
    n, t, _ = ta.shape
    m = vb.shape[0]
    # frame-major copies (O(B·T·D)): bmm on transposed views takes a slow strided path
    ta_t, vb_t = ta.transpose(0, 1).contiguous(), vb.transpose(0, 1).contiguous()

    def tile(r0, r1, out):
        return torch.mul(_pool_frames(torch.bmm(ta_t[:, r0:r1], vb_t.transpose(1, 2)), valid, pool, tau), scale,
                         out=out)

    chunk = _slot_chunk(m, t, ta.element_size(), workspace)
    # a pooled cosine of unit frames lies in [-1, 1] for every pool, so |s| <= |scale|
    return _cpu_forward(tile, n, m, abs(float(scale)), positives, offset, rows, cols, chunk, ta.dtype, ta.device)


def _cpu_slot_backward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats, col_stats,
                       g_row, g_col, workspace):
    n, t, _ = ta.shape
    m = vb.shape[0]
    chunk = _slot_chunk(m, t, ta.element_size(), workspace)
    ta_t, vb_t = ta.transpose(0, 1).contiguous(), vb.transpose(0, 1).contiguous()
    dta = torch.empty_like(ta)
    dvb_t = torch.zeros_like(vb_t)
    dscale = torch.zeros((), dtype=ta.dtype, device=ta.device)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        a_c = ta_t[:, r0:r1]
        pooled, w = _pool_frames(torch.bmm(a_c, vb_t.transpose(1, 2)), valid, pool, tau, weights=True)
        g = _grad_logits(pooled * scale, positives, offset, r0, r1, rows, cols, row_stats, col_stats,
                         g_row, g_col)
        dscale += torch.dot(g.reshape(-1), pooled.reshape(-1))
        w.mul_((g * scale)[None])  # d loss / d cos, one [T, chunk, M] slab
        dta[r0:r1] = torch.bmm(w, vb_t).transpose(0, 1)
        dvb_t.baddbmm_(w.transpose(1, 2), a_c)
    return dta, dvb_t.transpose(0, 1).contiguous(), dscale


# ----------------------------------------------------------------------------- custom ops
def _zeros_like_stats(t: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(n, dtype=like.dtype, device=like.device) if t is None else t.to(like.dtype)


@torch.library.custom_op("vtalign::infonce", mutates_args=())
def _infonce_op(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor | None,
                offset: int, rows: bool, cols: bool, backend: str, workspace: int, precision: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.infonce_forward(a, b, scale, positives, offset, rows, cols, precision=precision)
    return _cpu_infonce_forward(a, b, scale.to(a.dtype), positives, offset, rows, cols, workspace)


@_infonce_op.register_fake
def _(a, b, scale, positives, offset, rows, cols, backend, workspace, precision):
    dt = torch.float64 if a.dtype == torch.float64 else torch.float32
    n, m = a.shape[0], b.shape[0]
    return (a.new_empty((n,), dtype=dt), a.new_empty((m,), dtype=dt), a.new_empty((2, n), dtype=dt),
            a.new_empty((2, m), dtype=dt))


@torch.library.custom_op("vtalign::infonce_backward", mutates_args=())
def _infonce_backward_op(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                         positives: torch.Tensor | None, offset: int, rows: bool, cols: bool,
                         row_stats: torch.Tensor, col_stats: torch.Tensor, g_row: torch.Tensor,
                         g_col: torch.Tensor, backend: str, workspace: int, precision: str
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.infonce_backward(a, b, scale, positives, offset, rows, cols, row_stats, col_stats,
                                   g_row, g_col, precision=precision)
    da, db, ds = _cpu_infonce_backward(a, b, scale.to(a.dtype), positives, offset, rows, cols, row_stats,
                                       col_stats, g_row.to(a.dtype), g_col.to(a.dtype), workspace)
    return da, db, ds.to(scale.dtype)


@_infonce_backward_op.register_fake
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
    da, db, ds = _infonce_backward_op(a, b, scale, positives, offset, rows, cols, row_stats, col_stats,
                                      g_rl, g_cl, backend, workspace, precision)
    return da, db, ds, None, None, None, None, None, None, None


_infonce_op.register_autograd(_infonce_backward, setup_context=_setup_infonce)


@torch.library.custom_op("vtalign::slot_infonce", mutates_args=())
def _slot_op(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
             positives: torch.Tensor | None, offset: int, rows: bool, cols: bool, pool: str, tau: float,
             backend: str, workspace: int, precision: str
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.slot_forward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau,
                               precision=precision)
    return _cpu_slot_forward(ta, vb, valid, scale.to(ta.dtype), positives, offset, rows, cols, pool, tau,
                             workspace)


@_slot_op.register_fake
def _(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, backend, workspace, precision):
    dt = torch.float64 if ta.dtype == torch.float64 else torch.float32
    n, m = ta.shape[0], vb.shape[0]
    return (ta.new_empty((n,), dtype=dt), ta.new_empty((m,), dtype=dt), ta.new_empty((2, n), dtype=dt),
            ta.new_empty((2, m), dtype=dt))


@torch.library.custom_op("vtalign::slot_infonce_backward", mutates_args=())
def _slot_backward_op(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
                      positives: torch.Tensor | None, offset: int, rows: bool, cols: bool, pool: str,
                      tau: float, row_stats: torch.Tensor, col_stats: torch.Tensor, g_row: torch.Tensor,
                      g_col: torch.Tensor, backend: str, workspace: int, precision: str
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vtalign.kernels import contrastive as tk
        return tk.slot_backward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats,
                                col_stats, g_row, g_col, precision=precision)
    dta, dvb, ds = _cpu_slot_backward(ta, vb, valid, scale.to(ta.dtype), positives, offset, rows, cols, pool,
                                      tau, row_stats, col_stats, g_row.to(ta.dtype), g_col.to(ta.dtype),
                                      workspace)
    return dta, dvb, ds.to(scale.dtype)


@_slot_backward_op.register_fake
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
    dta, dvb, ds = _slot_backward_op(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau,
                                     row_stats, col_stats, g_rl, g_cl, backend, workspace, precision)
    return dta, dvb, None, ds, None, None, None, None, None, None, None, None, None


_slot_op.register_autograd(_slot_backward, setup_context=_setup_slot)


# ----------------------------------------------------------------------------- checks
def check_logit_scale(logit_scale, device: torch.device, checks: DeferredChecks | None = None) -> torch.Tensor:
    """The multiplier of the cosines as a 0-d tensor; a float or a 0-d tensor, finite and > 0.
    With `checks`, a tensor's value is checked there (one sync for every value check)."""
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float, torch.Tensor)):
        raise TypeError(f"logit_scale must be a float or a 0-d tensor, got {type(logit_scale).__name__}")
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.dim() != 0:
            raise ValueError(f"logit_scale must be a 0-d tensor, got shape {tuple(logit_scale.shape)}")
        if not logit_scale.is_floating_point():
            raise TypeError(f"logit_scale must have a floating dtype, got {logit_scale.dtype}")
        if checks is not None:
            v = logit_scale.detach()
            checks.add(~(torch.isfinite(v) & (v > 0)), lambda: _check_scale_value(float(v)))
        else:
            _check_scale_value(float(logit_scale.detach()))
        return logit_scale
    _check_scale_value(float(logit_scale))
    return torch.tensor(float(logit_scale), dtype=torch.float32, device=device)


def _check_scale_value(value: float) -> None:
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"logit_scale must be finite and > 0 (it multiplies the cosines; pass "
                         f"logit_scale.exp() for CLIP's log-parameter), got {value}")


def _check_positives(positives, n: int, m: int, device, need_cols: bool,
                     checks: DeferredChecks | None = None) -> torch.Tensor | None:
    if positives is None:
        if n != m:
            raise ValueError(f"positives is required when the two sides differ in size ({n} vs {m})")
        return None
    if not isinstance(positives, torch.Tensor):
        raise TypeError(f"positives must be a bool torch.Tensor, got {type(positives).__name__}")
    if positives.dtype != torch.bool:
        raise TypeError(f"positives must have dtype torch.bool, got {positives.dtype}")
    if tuple(positives.shape) != (n, m):
        raise ValueError(f"positives must have shape {(n, m)}, got {tuple(positives.shape)}")
    if positives.device != device:
        raise ValueError(f"positives must be on {device}, got {positives.device}")

    if checks is None:
        check_positive_rows(positives, need_cols)
    else:
        bad = (~positives.any(1)).any()
        if need_cols:
            bad = bad | (~positives.any(0)).any()
        checks.add(bad, lambda: check_positive_rows(positives, need_cols))
    return positives.contiguous()


def _value_checks(checks: DeferredChecks, logit_scale, positives, symmetric: bool, **sides: torch.Tensor):
    """The loss's value checks (scale, positives, finite inputs; plus whatever `checks`
    already holds) with one host sync. `sides`: the two inputs by name, rows first.
    Returns (scale, positives)."""
    (_, x), (_, y) = sides.items()
    scale = check_logit_scale(logit_scale, x.device, checks)
    pos = _check_positives(positives, x.shape[0], y.shape[0], x.device, symmetric, checks)
    for name, t in sides.items():
        checks.finite(name, t)
    checks.run()
    return scale, pos


def check_positive_rows(positives: torch.Tensor, need_cols: bool) -> None:
    """Every row (and with `need_cols` every column) of the bool mask has a positive."""
    empty = ~positives.any(1)
    if bool(empty.any()):
        raise ValueError(f"positives: row {int(empty.nonzero()[0])} has no positive")
    if need_cols:
        empty = ~positives.any(0)
        if bool(empty.any()):
            raise ValueError(f"positives: column {int(empty.nonzero()[0])} has no positive "
                             "(symmetric=True needs one per column)")


def _check_common(symmetric, reduction, n: int, m: int) -> None:
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none" and symmetric and n != m:
        raise ValueError("reduction='none' with symmetric=True needs equal sizes (one loss per pair)")


def _reduce(row: torch.Tensor, col: torch.Tensor, symmetric: bool, reduction: str) -> torch.Tensor:
    if not symmetric:
        return row if reduction == "none" else (row.mean() if reduction == "mean" else row.sum())
    if reduction == "none":
        return 0.5 * (row + col)
    if reduction == "mean":
        return 0.5 * (row.mean() + col.mean())
    return 0.5 * (row.sum() + col.sum())


def _check_precision(precision: str) -> None:
    if precision not in ("ieee", "tf32", "tf32x3"):
        raise ValueError(f"precision must be 'ieee', 'tf32' or 'tf32x3', got {precision!r}")


# ----------------------------------------------------------------------------- public
def infonce_parts(a_hat: torch.Tensor, b_hat: torch.Tensor, scale: torch.Tensor,
                  positives: torch.Tensor | None, *, offset: int = 0, rows: bool = True, cols: bool = True,
                  backend: str = "torch", max_workspace_bytes: int = DEFAULT_WORKSPACE,
                  precision: str = "tf32x3") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row and per-column InfoNCE losses over already normalised rows (no checks).

    a_hat `[N, D]`, b_hat `[M, D]`; positives `[N, M]` bool or None (then the single
    positive of row i is column i + offset). Returns `(row_loss [N], col_loss [M])`;
    a direction switched off returns zeros. The building block of
    `vtalign.distributed`, where the two sides are a shard and the gathered batch.
    """
    scale = scale.to(device=a_hat.device, dtype=_compute_dtype(a_hat))
    out = _infonce_op(a_hat, b_hat, scale, positives, int(offset), rows, cols, backend,
                      int(max_workspace_bytes), precision)
    return out[0], out[1]


def slot_parts(ta_hat: torch.Tensor, vb_hat: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
               positives: torch.Tensor | None, *, pool: str, pool_temperature: float, offset: int = 0,
               rows: bool = True, cols: bool = True, backend: str = "torch",
               max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row and per-column frame-slot losses over normalised frames (no checks).

    ta_hat `[N, T, D]`, vb_hat `[M, T, D]`, valid `[M, T]`; see `infonce_parts`.
    """
    scale = scale.to(device=ta_hat.device, dtype=_compute_dtype(ta_hat))
    if pool == "mean":
        w = valid.to(vb_hat.dtype) / valid.sum(1, keepdim=True).to(vb_hat.dtype)
        a2 = ta_hat.reshape(ta_hat.shape[0], -1)
        b2 = (vb_hat * w[:, :, None]).reshape(vb_hat.shape[0], -1)
        return infonce_parts(a2, b2, scale, positives, offset=offset, rows=rows, cols=cols, backend=backend,
                             max_workspace_bytes=max_workspace_bytes, precision=precision)
    out = _slot_op(ta_hat, vb_hat, valid.contiguous(), scale, positives, int(offset), rows, cols, pool,
                   float(pool_temperature), backend, int(max_workspace_bytes), precision)
    return out[0], out[1]


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, *, positives: torch.Tensor | None = None,
                     symmetric: bool = True, reduction: str = "mean", backend: str = "auto",
                     max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3",
                     normalize: bool = True) -> torch.Tensor:
    """InfoNCE / CLIP loss over s_ij = scale·⟨â_i, b̂_j⟩ without storing the logits.

    Args:
        a: `[N, D]` (e.g. text embeddings); rows are L2-normalised inside.
        b: `[M, D]` (e.g. video embeddings), the same D.
        logit_scale: the multiplier of the cosines (CLIP's `logit_scale.exp()`), a float
            or a 0-d tensor (gradients flow to it), finite and > 0.
        positives: optional `[N, M]` bool mask; row i's loss is
            −log Σ_{j∈P(i)} e^{s_ij} + log Σ_j e^{s_ij}, columns use P transposed.
            None means the identity (needs N == M). Every row (and, when symmetric,
            every column) needs a positive.
        symmetric: average the row (a→b) and column (b→a) losses.
        reduction: "mean", "sum" or "none" (per-index losses `[N]`; with symmetric the
            mean of row and column loss k, which needs N == M).
        backend: "auto", "triton", "cpp", "torch" or "reference".
        max_workspace_bytes: CPU chunk budget (the B×B logits are never built).
        precision: Triton dot precision for float32 inputs ("tf32x3" default, "ieee", "tf32").
        normalize: L2-normalise rows (cosine logits). False uses the rows as given, as
            open_clip's ClipLoss does with already-normalised features; the gradient then
            keeps its radial part.

    Returns:
        a 0-d loss (or `[N]` for reduction="none"), float32 (float64 for float64 inputs).
    """
    check_tensor("a", a, ndims=(2,))
    check_tensor("b", b, ndims=(2,))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature size D, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_same_device(a=a, b=b)
    n, m = a.shape[0], b.shape[0]
    _check_common(symmetric, reduction, n, m)
    _check_precision(precision)
    scale, pos = _value_checks(DeferredChecks(), logit_scale, positives, symmetric, a=a, b=b)
    be = resolve_backend(backend, [a, b], triton_unsupported=triton_dtype_gap(a, b))
    if be == "reference":
        return ref.contrastive_loss(a, b, scale, positives=pos, symmetric=symmetric, reduction=reduction,
                                    normalize=normalize)
    cdt = _compute_dtype(a, b)
    if normalize:
        a_hat, b_hat = _unit(a, cdt, be), _unit(b, cdt, be)
    else:
        keep = be == "triton" and a.dtype in (torch.float16, torch.bfloat16)
        a_hat, b_hat = (a, b) if keep else (a.to(cdt), b.to(cdt))
    if be == "triton":
        b_hat = b_hat.to(a_hat.dtype)
    row, col = infonce_parts(a_hat, b_hat, scale, pos, rows=True, cols=symmetric, backend=be,
                             max_workspace_bytes=max_workspace_bytes, precision=precision)
    return _reduce(row, col, symmetric, reduction)


def check_slot_inputs(ta, vb, valid, pool, pool_temperature, checks: DeferredChecks | None = None) -> None:
    """Shape, dtype and value checks of the frame-slot loss, naming the argument."""
    check_tensor("ta", ta, ndims=(3,))
    check_tensor("vb", vb, ndims=(3,))
    if ta.shape[1:] != vb.shape[1:]:
        raise ValueError(f"ta and vb must share [T, D], got {tuple(ta.shape)} and {tuple(vb.shape)}")
    check_tensor("valid", valid, ndims=(2,), floating=False)
    if valid.dtype != torch.bool:
        raise TypeError(f"valid must have dtype torch.bool, got {valid.dtype}")
    if tuple(valid.shape) != (vb.shape[0], vb.shape[1]):
        raise ValueError(f"valid must have shape {(vb.shape[0], vb.shape[1])} (videos, frames), "
                         f"got {tuple(valid.shape)}")
    check_same_device(ta=ta, vb=vb, valid=valid)

    def no_frame():
        none = ~valid.any(1)
        if bool(none.any()):
            raise ValueError(f"valid: video {int(none.nonzero()[0])} has no valid frame")

    if checks is None:
        no_frame()
    else:
        checks.add((~valid.any(1)).any(), no_frame)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if isinstance(pool_temperature, bool) or not isinstance(pool_temperature, (int, float)):
        raise TypeError(f"pool_temperature must be a float, got {type(pool_temperature).__name__}")
    if not math.isfinite(pool_temperature) or pool_temperature <= 0:
        raise ValueError(f"pool_temperature must be finite and > 0, got {pool_temperature}")
    if pool == "lse" and pool_temperature < MIN_POOL_TEMPERATURE:
        # cos/τ must stay finite in float32, where the pool is computed
        raise ValueError(f"pool_temperature must be >= {MIN_POOL_TEMPERATURE:g} for pool='lse' (cos/τ would "
                         f"overflow float32), got {pool_temperature:g}; as τ -> 0 the lse pool tends to "
                         "pool='max'")


def slot_contrastive_loss(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, logit_scale, *,
                          pool: str = "mean", pool_temperature: float = 0.1,
                          positives: torch.Tensor | None = None, symmetric: bool = True,
                          reduction: str = "mean", backend: str = "auto",
                          max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
                          ) -> torch.Tensor:
    """MoVA frame-slot InfoNCE: s_ij = scale · pool_{t∈V_j} cos(ta[i,t], vb[j,t]).

    Args:
        ta: `[N, T, D]` per-slot text features (masked text subspaces).
        vb: `[M, T, D]` per-frame video features.
        valid: `[M, T]` bool, the valid frames V_j of video j (each video needs one).
        logit_scale: multiplier of the pooled cosines, float or 0-d tensor, > 0.
        pool: "mean", "max", or "lse" = τ·log((1/|V_j|) Σ_t exp(cos/τ)).
        pool_temperature: τ of the "lse" pool.
        positives, symmetric, reduction, backend, max_workspace_bytes, precision:
            as in `contrastive_loss`.

    Returns:
        a 0-d loss (or `[N]` for reduction="none"). No `[N, M, T]` tensor is built
        (the CPU path holds one `[chunk, M, T]` slab at a time).
    """
    checks = DeferredChecks()
    check_slot_inputs(ta, vb, valid, pool, pool_temperature, checks)
    n, m = ta.shape[0], vb.shape[0]
    _check_common(symmetric, reduction, n, m)
    _check_precision(precision)
    scale, pos = _value_checks(checks, logit_scale, positives, symmetric, ta=ta, vb=vb)
    be = resolve_backend(backend, [ta, vb], triton_unsupported=triton_dtype_gap(ta, vb))
    if be == "reference":
        return ref.slot_contrastive_loss(ta, vb, valid, scale, pool=pool, pool_temperature=pool_temperature,
                                         positives=pos, symmetric=symmetric, reduction=reduction)
    cdt = _compute_dtype(ta, vb)
    ta_hat, vb_hat = _unit(ta, cdt, be), _unit(vb, cdt, be)
    if be == "triton":
        vb_hat = vb_hat.to(ta_hat.dtype)
    row, col = slot_parts(ta_hat, vb_hat, valid, scale, pos, pool=pool, pool_temperature=float(pool_temperature),
                          rows=True, cols=symmetric, backend=be, max_workspace_bytes=max_workspace_bytes,
                          precision=precision)
    return _reduce(row, col, symmetric, reduction)
