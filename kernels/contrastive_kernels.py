"""The @triton.jit code of the contrastive losses: tile helpers (cosines, positives, pooled
frames, online log-sum-exp, dL/ds) and the InfoNCE and frame-slot kernels. The launchers,
tile configurations and column splits are in `kernels/contrastive.py`, whose docstring
gives the grid, the merge and the precision rules."""
from __future__ import annotations

import triton
import triton.language as tl

NEG = tl.constexpr(-1.0e30)  # finite "minus infinity": exp(NEG - m) is 0 and NEG - NEG is no NaN


@triton.jit
def _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_x, stride_y, x_off, y_off,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              PRECISION: tl.constexpr):
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    offs_d = tl.arange(0, BLOCK_D)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + offs_d
        d_ok = dd < D
        # int64 offsets: rows * stride reaches 2^31 at B·D (slots: B·T·D) >= 2^31
        x = tl.load(X + rows.to(tl.int64)[:, None] * stride_x + x_off + dd[None, :],
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        yt = tl.load(Y + cols.to(tl.int64)[None, :] * stride_y + y_off + dd[:, None],
                     mask=col_ok[None, :] & d_ok[:, None], other=0.0)
        acc = tl.dot(x, yt, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc):
    ok = row_ok[:, None] & col_ok[None, :]
    # tl.where, not ok & use: triton 3.9's interpreter gives a tensor & 0-d flag the wrong
    # dtype (its load then rejects the mask); tl.cast: a flag of 1 arrives as a constexpr
    use = tl.cast(has_pos, tl.int32) != 0
    # int64: the dense [B, B] mask has B² >= 2^31 entries from B = 46,341
    loaded = tl.load(POS + rows.to(tl.int64)[:, None] * stride_pr + cols.to(tl.int64)[None, :] * stride_pc,
                     mask=tl.where(use, ok, False), other=0) != 0
    diag = cols[None, :] == rows[:, None] + offset
    return tl.where(use, loaded, diag) & ok


@triton.jit
def _pooled_tile(X, Y, VALID, COUNT, rows, cols, row_ok, col_ok, T, D, tau,
                 stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc, stride_vt,
                 stride_cr, stride_cc,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 POOL: tl.constexpr, PRECISION: tl.constexpr):
    """Pooled cosine over the valid frames: POOL 1 = max (and its first argmax), 2 = lse."""
    ok = row_ok[:, None] & col_ok[None, :]
    vbase = VALID + rows.to(tl.int64)[:, None] * stride_vr + cols.to(tl.int64)[None, :] * stride_vc
    best = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32) + NEG
    arg = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int32)
    run = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for t in range(0, T):
        c = _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_xn, stride_yn, t * stride_xt,
                      t * stride_yt, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        v = tl.load(vbase + t * stride_vt, mask=ok, other=0) != 0
        if POOL == 1:
            take = v & (c > best)
            arg = tl.where(take, t, arg)
            best = tl.where(take, c, best)
        else:
            z = tl.where(v, c / tau, NEG)
            new = tl.maximum(best, z)
            run = run * tl.exp(best - new) + tl.exp(tl.where(v, z - new, NEG))
            best = new
    if POOL == 1:
        pooled = best
        lz = best
    else:
        cnt = tl.load(COUNT + rows[:, None] * stride_cr + cols[None, :] * stride_cc, mask=ok, other=1.0)
        lz = best + tl.log(tl.where(ok, run, 1.0))
        pooled = tau * (lz - tl.log(cnt))
    pooled = tl.where(ok, pooled, 0.0)
    return pooled, arg, lz


@triton.jit
def _online_lse_update(m_run, l_run, s, take):
    """Fold a tile into per-row running (max, sum of exp); `take` marks the cells that count."""
    new = tl.maximum(m_run, tl.max(tl.where(take, s, NEG), 1))
    l_run = l_run * tl.exp(m_run - new) + tl.sum(tl.exp(tl.where(take, s - new[:, None], NEG)), 1)
    return new, l_run


@triton.jit
def _grad_tile(s, p, ok, lse_x, plse_x, g_x, lse_y, plse_y, g_y, x_on, y_on):
    """dL/ds: g_i·(softmax_row − softmax over P(i)) + g_j·(softmax_col − softmax over P(j))."""
    # exponents of cells that do not count go to NEG first, so nothing overflows to inf
    xo = tl.where(tl.cast(x_on, tl.int32) != 0, ok, False)  # see _positive_tile
    yo = tl.where(tl.cast(y_on, tl.int32) != 0, ok, False)
    gx = tl.exp(tl.where(xo, s - lse_x[:, None], NEG)) - tl.exp(tl.where(xo & p, s - plse_x[:, None], NEG))
    gy = tl.exp(tl.where(yo, s - lse_y[None, :], NEG)) - tl.exp(tl.where(yo & p, s - plse_y[None, :], NEG))
    return gx * g_x[:, None] + gy * g_y[None, :]


@triton.jit
def _split_columns(M, cols_per_split):
    """[c0, c1): the columns of this program's split (grid axis 1)."""
    c0 = tl.program_id(1) * cols_per_split
    return c0, tl.minimum(c0 + cols_per_split, M)


@triton.jit
def _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run, N):
    """This split's log-sum-exps m + log l of the rows, at [split, row]; a row with no cell
    in the split (positives: none in it) gets NEG, which the merge ignores."""
    out = tl.program_id(1) * N + rows
    tl.store(OUT_LSE + out, m_run + tl.log(tl.where(row_ok & (l_run > 0), l_run, 1.0)), mask=row_ok)
    tl.store(OUT_PLSE + out, pm_run + tl.log(tl.where(row_ok & (pl_run > 0), pl_run, 1.0)), mask=row_ok)


@triton.jit
def _infonce_fwd_kernel(
    X, Y, SCALE, POS, OUT_LSE, OUT_PLSE,
    N, M, D, offset, has_pos, cols_per_split,
    stride_x, stride_y, stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    c0, c1 = _split_columns(M, cols_per_split)
    scale = tl.load(SCALE)
    m_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    l_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    pm_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    pl_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(c0, c1, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < c1
        s = scale * _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_x, stride_y, 0, 0,
                              BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        m_run, l_run = _online_lse_update(m_run, l_run, s, ok)
        pm_run, pl_run = _online_lse_update(pm_run, pl_run, s, p)
    _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run, N)


@triton.jit
def _infonce_bwd_kernel(
    X, Y, SCALE, POS, LSE_X, PLSE_X, G_X, LSE_Y, PLSE_Y, G_Y, DX, DSCALE,
    N, M, D, offset, has_pos, x_on, y_on, cols_per_split,
    stride_x, stride_y, stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    DX_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    c0, c1 = _split_columns(M, cols_per_split)
    # this split's partial dX: rows of the [splits, N, D] buffer (int64: N·D may pass 2^31)
    dx_rows = (tl.program_id(1) * N + rows).to(tl.int64) * D
    scale = tl.load(SCALE)
    lse_x = tl.load(LSE_X + rows, mask=row_ok, other=0.0)
    plse_x = tl.load(PLSE_X + rows, mask=row_ok, other=0.0)
    g_x = tl.load(G_X + rows, mask=row_ok, other=0.0)
    offs_d = tl.arange(0, BLOCK_D)
    ds = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(c0, c1, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < c1
        cos = _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_x, stride_y, 0, 0,
                        BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        lse_y = tl.load(LSE_Y + cols, mask=col_ok, other=0.0)
        plse_y = tl.load(PLSE_Y + cols, mask=col_ok, other=0.0)
        g_y = tl.load(G_Y + cols, mask=col_ok, other=0.0)
        g = _grad_tile(scale * cos, p, ok, lse_x, plse_x, g_x, lse_y, plse_y, g_y, x_on, y_on)
        ds += tl.sum(g * cos, 1)
        gs = g * scale  # dL/ds stays fp32: see _dx_update
        for d0 in range(0, D, BLOCK_D):
            _dx_update(DX, Y, gs, dx_rows, cols, row_ok, col_ok, d0, D, stride_y, 0, offs_d, DX_PRECISION)
        tl.debug_barrier()
    tl.store(DSCALE + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), tl.sum(ds, 0))


@triton.jit
def _dx_update(DX, Y, w, dx_rows, cols, row_ok, col_ok, d0, D, stride_y, y_off, offs_d,
               DX_PRECISION: tl.constexpr):
    """DX[rows, d0:d0+BLOCK_D] += w @ Y[cols, d0:d0+BLOCK_D], w = dL/ds in fp32.

    Y is loaded in its dtype and widened to fp32, so an fp16/bf16 input's product runs as
    a TF32 dot (DX_PRECISION "tf32": fp16's 10-bit mantissa, fp32's exponent range) and
    dL/ds -- of order (softmax - target)/B, below fp16's normal range at large B -- is
    never rounded to the input dtype. fp32 inputs use the forward's precision."""
    dd = d0 + offs_d
    d_ok = dd < D
    y = tl.load(Y + cols.to(tl.int64)[:, None] * stride_y + y_off + dd[None, :],
                mask=col_ok[:, None] & d_ok[None, :], other=0.0)
    ptr = DX + dx_rows[:, None] + dd[None, :]
    m2 = row_ok[:, None] & d_ok[None, :]
    cur = tl.load(ptr, mask=m2, other=0.0)
    tl.store(ptr, tl.dot(w, y.to(tl.float32), cur, input_precision=DX_PRECISION), mask=m2)


@triton.jit
def _slot_fwd_kernel(
    X, Y, VALID, COUNT, SCALE, POS, OUT_LSE, OUT_PLSE,
    N, M, T, D, offset, has_pos, tau, cols_per_split,
    stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc, stride_vt, stride_cr, stride_cc,
    stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, POOL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    c0, c1 = _split_columns(M, cols_per_split)
    scale = tl.load(SCALE)
    m_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    l_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    pm_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    pl_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(c0, c1, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < c1
        pooled, arg, lz = _pooled_tile(X, Y, VALID, COUNT, rows, cols, row_ok, col_ok, T, D, tau,
                                       stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc,
                                       stride_vt, stride_cr, stride_cc, BLOCK_M, BLOCK_N, BLOCK_D, POOL,
                                       PRECISION)
        s = scale * pooled
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        m_run, l_run = _online_lse_update(m_run, l_run, s, ok)
        pm_run, pl_run = _online_lse_update(pm_run, pl_run, s, p)
    _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run, N)


@triton.jit
def _slot_bwd_kernel(
    X, Y, VALID, COUNT, SCALE, POS, LSE_X, PLSE_X, G_X, LSE_Y, PLSE_Y, G_Y, DX, DSCALE,
    N, M, T, D, offset, has_pos, x_on, y_on, tau, cols_per_split,
    stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc, stride_vt, stride_cr, stride_cc,
    stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, POOL: tl.constexpr,
    PRECISION: tl.constexpr, DX_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    c0, c1 = _split_columns(M, cols_per_split)
    # this split's partial dX: rows of the [splits, N, T, D] buffer
    dx_rows = (tl.program_id(1) * N + rows).to(tl.int64) * (T * D)
    scale = tl.load(SCALE)
    lse_x = tl.load(LSE_X + rows, mask=row_ok, other=0.0)
    plse_x = tl.load(PLSE_X + rows, mask=row_ok, other=0.0)
    g_x = tl.load(G_X + rows, mask=row_ok, other=0.0)
    offs_d = tl.arange(0, BLOCK_D)
    ds = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(c0, c1, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < c1
        ok = row_ok[:, None] & col_ok[None, :]
        pooled, arg, lz = _pooled_tile(X, Y, VALID, COUNT, rows, cols, row_ok, col_ok, T, D, tau,
                                       stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc,
                                       stride_vt, stride_cr, stride_cc, BLOCK_M, BLOCK_N, BLOCK_D, POOL,
                                       PRECISION)
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        lse_y = tl.load(LSE_Y + cols, mask=col_ok, other=0.0)
        plse_y = tl.load(PLSE_Y + cols, mask=col_ok, other=0.0)
        g_y = tl.load(G_Y + cols, mask=col_ok, other=0.0)
        g = _grad_tile(scale * pooled, p, ok, lse_x, plse_x, g_x, lse_y, plse_y, g_y, x_on, y_on)
        ds += tl.sum(g * pooled, 1)
        gs = g * scale
        vbase = VALID + rows.to(tl.int64)[:, None] * stride_vr + cols.to(tl.int64)[None, :] * stride_vc
        for t in range(0, T):
            if POOL == 1:
                w = tl.where(arg == t, gs, 0.0)
            else:
                c = _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_xn, stride_yn, t * stride_xt,
                              t * stride_yt, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
                v = tl.load(vbase + t * stride_vt, mask=ok, other=0) != 0
                w = gs * tl.exp(tl.where(v, c / tau - lz, NEG))
            for d0 in range(0, D, BLOCK_D):  # w stays fp32, as in the InfoNCE backward
                _dx_update(DX, Y, w, dx_rows + t * D, cols, row_ok, col_ok, d0, D, stride_yn, t * stride_yt,
                           offs_d, DX_PRECISION)
        tl.debug_barrier()
    tl.store(DSCALE + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), tl.sum(ds, 0))
