"""Triton kernels for the contrastive losses (DESIGN.md §3.3, §3.5).

One program owns a block of rows of X and streams every tile of Y (flash-style):
the forward keeps an online log-sum-exp per row over all columns and over the
row's positives; the backward recomputes each logit tile from X and Y, forms
dL/ds from the saved statistics and accumulates dX. Nothing of size B×B (or
B×B×T) is ever written. The column direction is the same kernel with X and Y
swapped and the positive mask read through transposed strides, so every
direction is deterministic (no atomics).

dX is accumulated in an fp32 buffer by read-modify-write of the rows this
program owns (race-free: rows are never shared), chunked over D so any feature
size fits without register spills; a CTA barrier after each column tile keeps
the next tile's reads behind this tile's writes.

The slot kernels loop over the T frames inside a tile: the pooled cosine
(max: running maximum and its first argmax; lse: online log-sum-exp of cos/τ)
is formed in registers, and the backward recomputes the per-frame cosines to
spread dL/ds over the frames. Validity and frame counts are addressed through
(row, column) strides, one of which is zero, so the same kernel serves both
directions.

Precision: float32 inputs use `tl.dot(input_precision=...)`, "tf32x3" by default
(about fp32 accuracy on tensor cores); fp16/bf16 inputs use their tensor-core
path with fp32 accumulation, and dL/ds is cast to the input dtype for the dX dot.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import on_input_device

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
def _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run):
    tl.store(OUT_LSE + rows, m_run + tl.log(tl.where(row_ok, l_run, 1.0)), mask=row_ok)
    tl.store(OUT_PLSE + rows, pm_run + tl.log(tl.where(row_ok & (pl_run > 0), pl_run, 1.0)), mask=row_ok)


@triton.jit
def _infonce_fwd_kernel(
    X, Y, SCALE, POS, OUT_LSE, OUT_PLSE,
    N, M, D, offset, has_pos,
    stride_x, stride_y, stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    scale = tl.load(SCALE)
    m_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    l_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    pm_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    pl_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        s = scale * _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_x, stride_y, 0, 0,
                              BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        m_run, l_run = _online_lse_update(m_run, l_run, s, ok)
        pm_run, pl_run = _online_lse_update(pm_run, pl_run, s, p)
    _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run)


@triton.jit
def _infonce_bwd_kernel(
    X, Y, SCALE, POS, LSE_X, PLSE_X, G_X, LSE_Y, PLSE_Y, G_Y, DX, DSCALE,
    N, M, D, offset, has_pos, x_on, y_on,
    stride_x, stride_y, stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    scale = tl.load(SCALE)
    lse_x = tl.load(LSE_X + rows, mask=row_ok, other=0.0)
    plse_x = tl.load(PLSE_X + rows, mask=row_ok, other=0.0)
    g_x = tl.load(G_X + rows, mask=row_ok, other=0.0)
    offs_d = tl.arange(0, BLOCK_D)
    ds = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        cos = _cos_tile(X, Y, rows, cols, row_ok, col_ok, D, stride_x, stride_y, 0, 0,
                        BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        lse_y = tl.load(LSE_Y + cols, mask=col_ok, other=0.0)
        plse_y = tl.load(PLSE_Y + cols, mask=col_ok, other=0.0)
        g_y = tl.load(G_Y + cols, mask=col_ok, other=0.0)
        g = _grad_tile(scale * cos, p, ok, lse_x, plse_x, g_x, lse_y, plse_y, g_y, x_on, y_on)
        ds += tl.sum(g * cos, 1)
        gs = (g * scale).to(Y.dtype.element_ty)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + offs_d
            d_ok = dd < D
            y = tl.load(Y + cols.to(tl.int64)[:, None] * stride_y + dd[None, :], mask=col_ok[:, None] & d_ok[None, :],
                        other=0.0)
            ptr = DX + rows.to(tl.int64)[:, None] * D + dd[None, :]
            m2 = row_ok[:, None] & d_ok[None, :]
            cur = tl.load(ptr, mask=m2, other=0.0)
            tl.store(ptr, tl.dot(gs, y, cur, input_precision=PRECISION), mask=m2)
        tl.debug_barrier()
    tl.store(DSCALE + pid, tl.sum(ds, 0))


@triton.jit
def _slot_fwd_kernel(
    X, Y, VALID, COUNT, SCALE, POS, OUT_LSE, OUT_PLSE,
    N, M, T, D, offset, has_pos, tau,
    stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc, stride_vt, stride_cr, stride_cc,
    stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, POOL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    scale = tl.load(SCALE)
    m_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    l_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    pm_run = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG
    pl_run = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        pooled, arg, lz = _pooled_tile(X, Y, VALID, COUNT, rows, cols, row_ok, col_ok, T, D, tau,
                                       stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc,
                                       stride_vt, stride_cr, stride_cc, BLOCK_M, BLOCK_N, BLOCK_D, POOL,
                                       PRECISION)
        s = scale * pooled
        ok = row_ok[:, None] & col_ok[None, :]
        p = _positive_tile(POS, rows, cols, row_ok, col_ok, offset, has_pos, stride_pr, stride_pc)
        m_run, l_run = _online_lse_update(m_run, l_run, s, ok)
        pm_run, pl_run = _online_lse_update(pm_run, pl_run, s, p)
    _row_stats_epilogue(OUT_LSE, OUT_PLSE, rows, row_ok, m_run, l_run, pm_run, pl_run)


@triton.jit
def _slot_bwd_kernel(
    X, Y, VALID, COUNT, SCALE, POS, LSE_X, PLSE_X, G_X, LSE_Y, PLSE_Y, G_Y, DX, DSCALE,
    N, M, T, D, offset, has_pos, x_on, y_on, tau,
    stride_xn, stride_xt, stride_yn, stride_yt, stride_vr, stride_vc, stride_vt, stride_cr, stride_cc,
    stride_pr, stride_pc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, POOL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    scale = tl.load(SCALE)
    lse_x = tl.load(LSE_X + rows, mask=row_ok, other=0.0)
    plse_x = tl.load(PLSE_X + rows, mask=row_ok, other=0.0)
    g_x = tl.load(G_X + rows, mask=row_ok, other=0.0)
    offs_d = tl.arange(0, BLOCK_D)
    ds = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
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
            w = w.to(Y.dtype.element_ty)
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + offs_d
                d_ok = dd < D
                y = tl.load(Y + cols.to(tl.int64)[:, None] * stride_yn + t * stride_yt + dd[None, :],
                            mask=col_ok[:, None] & d_ok[None, :], other=0.0)
                ptr = DX + rows.to(tl.int64)[:, None] * (T * D) + t * D + dd[None, :]
                m2 = row_ok[:, None] & d_ok[None, :]
                cur = tl.load(ptr, mask=m2, other=0.0)
                tl.store(ptr, tl.dot(w, y, cur, input_precision=PRECISION), mask=m2)
        tl.debug_barrier()
    tl.store(DSCALE + pid, tl.sum(ds, 0))


# ----------------------------------------------------------------------------- launchers
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
POOL_IDS = {"max": 1, "lse": 2}


def config(kernel: str, dtype: torch.dtype) -> dict:
    """Tile sizes per kernel; every one compiles without spills on sm_80/sm_90 for fp32
    (tf32x3: three dots per product), fp16 and bf16. The elementwise work per tile (masks,
    two online log-sum-exps, the gradient's exponentials) is what bounds the tile size,
    not the dots; the slot kernels also carry the running pool statistics over T."""
    # Warps where triton 3.8/3.9 needed them: at 4 warps the fp32 (tf32x3) backward sat at
    # 255 registers and spilled 8 bytes; at 8 warps (a 128-register cap) the fp16/bf16
    # slot backward spilled 44 bytes on sm_80. These compile without spills on 3.6-3.9.
    if kernel == "fwd":
        return dict(BLOCK_M=64, BLOCK_N=32, BLOCK_D=32, num_warps=8, num_stages=2)
    if kernel == "bwd":
        return dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=32, num_warps=8 if dtype == torch.float32 else 4, num_stages=1)
    warps = 4 if kernel == "slot_bwd" and dtype != torch.float32 else 8
    return dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=16, num_warps=warps, num_stages=2 if kernel == "slot_fwd" else 1)


def _precision(dtype: torch.dtype, precision: str) -> str:
    return precision if dtype == torch.float32 else "ieee"


def _check(*ts: torch.Tensor) -> None:
    for t in ts:
        if t.dtype not in _DTYPES:
            raise TypeError(f"triton contrastive kernels support {_DTYPES}, got {t.dtype}")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x with a contiguous feature axis; strided rows (views) launch without a copy."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _pos_args(positives, transpose: bool, device):
    """(pointer tensor, has_pos, stride_row, stride_col) for the positive mask, or a dummy."""
    if positives is None:
        return torch.zeros(1, dtype=torch.uint8, device=device), 0, 0, 0
    p = positives.contiguous().view(torch.uint8)
    sr, sc = p.stride()
    return (p, 1, sc, sr) if transpose else (p, 1, sr, sc)


def _lse_pass(x, y, scale, positives, offset, transpose, precision):
    n, d = x.shape
    m = y.shape[0]
    lse = torch.empty(n, dtype=torch.float32, device=x.device)
    plse = torch.empty(n, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    cfg = config("fwd", x.dtype)
    nw, ns = cfg.pop("num_warps"), cfg.pop("num_stages")
    _infonce_fwd_kernel[(triton.cdiv(n, cfg["BLOCK_M"]),)](
        x, y, scale, pos, lse, plse, n, m, d, offset, has_pos, x.stride(0), y.stride(0), spr, spc,
        PRECISION=_precision(x.dtype, precision), num_warps=nw, num_stages=ns, **cfg)
    return lse, plse


def _scale_arg(scale: torch.Tensor, device) -> torch.Tensor:
    return scale.detach().to(device=device, dtype=torch.float32).reshape(1).contiguous()


@on_input_device
def infonce_forward(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, positives, offset: int,
                    rows: bool, cols: bool, *, precision: str = "tf32x3"):
    """Row/column InfoNCE over unit rows a `[N, D]`, b `[M, D]` (same dtype).

    positives: `[N, M]` bool or None (then row i's positive is column i + offset).
    Returns `(row_loss [N], col_loss [M], row_stats [2, N], col_stats [2, M])`, fp32;
    stats are (log-sum-exp over all, over the positives); a direction that is off is zeros.
    """
    _check(a, b)
    a, b = _rows(a), _rows(b.to(a.dtype))
    n, m = a.shape[0], b.shape[0]
    s = _scale_arg(scale, a.device)
    row_stats = torch.zeros(2, n, dtype=torch.float32, device=a.device)
    col_stats = torch.zeros(2, m, dtype=torch.float32, device=a.device)
    if rows:
        row_stats[0], row_stats[1] = _lse_pass(a, b, s, positives, offset, False, precision)
    if cols:
        col_stats[0], col_stats[1] = _lse_pass(b, a, s, positives, -offset, True, precision)
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _grad_pass(x, y, scale, positives, offset, transpose, sx, gx, sy, gy, x_on, y_on, precision):
    n, d = x.shape
    m = y.shape[0]
    cfg = config("bwd", x.dtype)
    nw, ns = cfg.pop("num_warps"), cfg.pop("num_stages")
    grid = triton.cdiv(n, cfg["BLOCK_M"])
    dx = torch.zeros(n, d, dtype=torch.float32, device=x.device)
    dscale = torch.empty(grid, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _infonce_bwd_kernel[(grid,)](
        x, y, scale, pos, sx[0], sx[1], gx, sy[0], sy[1], gy, dx, dscale,
        n, m, d, offset, has_pos, int(x_on), int(y_on), x.stride(0), y.stride(0), spr, spc,
        PRECISION=_precision(x.dtype, precision), num_warps=nw, num_stages=ns, **cfg)
    return dx, dscale.sum()


@on_input_device
def infonce_backward(a, b, scale, positives, offset, rows, cols, row_stats, col_stats, g_row, g_col, *,
                     precision: str = "tf32x3"):
    """Gradients `(da, db, dscale)` of Σ g_row·row_loss + Σ g_col·col_loss, tiles recomputed."""
    _check(a, b)
    a, b = _rows(a), _rows(b.to(a.dtype))
    s = _scale_arg(scale, a.device)
    rs, cs = row_stats.float().contiguous(), col_stats.float().contiguous()
    gr, gc = g_row.float().contiguous(), g_col.float().contiguous()
    da, dscale = _grad_pass(a, b, s, positives, offset, False, rs, gr, cs, gc, rows, cols, precision)
    db, _ = _grad_pass(b, a, s, positives, -offset, True, cs, gc, rs, gr, cols, rows, precision)
    return da.to(a.dtype), db.to(b.dtype), dscale.to(scale.dtype).reshape(())


def _slot_geometry(x, valid_on_rows: bool, valid, count):
    """Strides that address valid[video, t] and count[video] from (row, column) indices."""
    sv = valid.stride(0)
    if valid_on_rows:
        return dict(stride_vr=sv, stride_vc=0, stride_vt=valid.stride(1), stride_cr=1, stride_cc=0)
    return dict(stride_vr=0, stride_vc=sv, stride_vt=valid.stride(1), stride_cr=0, stride_cc=1)


def _slot_lse_pass(x, y, valid, count, valid_on_rows, scale, positives, offset, transpose, pool, tau,
                   precision):
    n, t, d = x.shape
    m = y.shape[0]
    lse = torch.empty(n, dtype=torch.float32, device=x.device)
    plse = torch.empty(n, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    cfg = config("slot_fwd", x.dtype)
    nw, ns = cfg.pop("num_warps"), cfg.pop("num_stages")
    _slot_fwd_kernel[(triton.cdiv(n, cfg["BLOCK_M"]),)](
        x, y, valid, count, scale, pos, lse, plse, n, m, t, d, offset, has_pos, float(tau),
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), stride_pr=spr, stride_pc=spc,
        POOL=POOL_IDS[pool], PRECISION=_precision(x.dtype, precision), num_warps=nw, num_stages=ns,
        **_slot_geometry(x, valid_on_rows, valid, count), **cfg)
    return lse, plse


def _slot_prep(ta, vb, valid):
    _check(ta, vb)
    ta, vb = ta.contiguous(), vb.to(ta.dtype).contiguous()
    v8 = valid.contiguous().view(torch.uint8)
    count = valid.sum(1).to(torch.float32).contiguous()
    return ta, vb, v8, count


@on_input_device
def slot_forward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, *, precision="tf32x3"):
    """Frame-slot InfoNCE (pool "max" or "lse") over unit frames ta `[N, T, D]`, vb `[M, T, D]`,
    valid `[M, T]`; returns as `infonce_forward`."""
    ta, vb, v8, count = _slot_prep(ta, vb, valid)
    n, m = ta.shape[0], vb.shape[0]
    s = _scale_arg(scale, ta.device)
    row_stats = torch.zeros(2, n, dtype=torch.float32, device=ta.device)
    col_stats = torch.zeros(2, m, dtype=torch.float32, device=ta.device)
    if rows:
        row_stats[0], row_stats[1] = _slot_lse_pass(ta, vb, v8, count, False, s, positives, offset, False,
                                                    pool, tau, precision)
    if cols:
        col_stats[0], col_stats[1] = _slot_lse_pass(vb, ta, v8, count, True, s, positives, -offset, True,
                                                    pool, tau, precision)
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _slot_grad_pass(x, y, valid, count, valid_on_rows, scale, positives, offset, transpose, sx, gx, sy, gy,
                    x_on, y_on, pool, tau, precision):
    n, t, d = x.shape
    m = y.shape[0]
    cfg = config("slot_bwd", x.dtype)
    nw, ns = cfg.pop("num_warps"), cfg.pop("num_stages")
    grid = triton.cdiv(n, cfg["BLOCK_M"])
    dx = torch.zeros(n, t, d, dtype=torch.float32, device=x.device)
    dscale = torch.empty(grid, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _slot_bwd_kernel[(grid,)](
        x, y, valid, count, scale, pos, sx[0], sx[1], gx, sy[0], sy[1], gy, dx, dscale,
        n, m, t, d, offset, has_pos, int(x_on), int(y_on), float(tau),
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), stride_pr=spr, stride_pc=spc,
        POOL=POOL_IDS[pool], PRECISION=_precision(x.dtype, precision), num_warps=nw, num_stages=ns,
        **_slot_geometry(x, valid_on_rows, valid, count), **cfg)
    return dx, dscale.sum()


@on_input_device
def slot_backward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats, col_stats,
                  g_row, g_col, *, precision="tf32x3"):
    """Gradients `(dta, dvb, dscale)` of the frame-slot losses, tiles and frames recomputed."""
    ta, vb, v8, count = _slot_prep(ta, vb, valid)
    s = _scale_arg(scale, ta.device)
    rs, cs = row_stats.float().contiguous(), col_stats.float().contiguous()
    gr, gc = g_row.float().contiguous(), g_col.float().contiguous()
    dta, dscale = _slot_grad_pass(ta, vb, v8, count, False, s, positives, offset, False, rs, gr, cs, gc,
                                  rows, cols, pool, tau, precision)
    dvb, _ = _slot_grad_pass(vb, ta, v8, count, True, s, positives, -offset, True, cs, gc, rs, gr,
                             cols, rows, pool, tau, precision)
    return dta.to(ta.dtype), dvb.to(vb.dtype), dscale.to(scale.dtype).reshape(())


# ----------------------------------------------------------------------------- static compile
def static_cases():
    """Forward then backward of the InfoNCE and frame-slot launchers for every dtype and
    float32 precision: diagonal positives in both directions and both slot pools; at the
    default precision also a dense positive mask with one direction (flags of 1 become
    the JIT's constants), unaligned row views with an offset of 1, and inputs above 2^31
    elements, for the compile check."""
    from ._static import meta, unaligned_rows

    def infonce(a, b, positives=None, offset=0, rows=True, cols=True, precision="tf32x3"):
        scale = torch.tensor(10.0, device=a.device)
        _, _, rs, cs = infonce_forward(a, b, scale, positives, offset, rows, cols, precision=precision)
        g_r = torch.ones(a.shape[0], device=a.device)
        g_c = torch.ones(b.shape[0], device=a.device)
        infonce_backward(a, b, scale, positives, offset, rows, cols, rs, cs, g_r, g_c, precision=precision)

    def slot(ta, vb, valid, pool, precision, positives=None):
        scale = torch.tensor(10.0, device=ta.device)
        _, _, rs, cs = slot_forward(ta, vb, valid, scale, positives, 0, True, True, pool, 0.1,
                                    precision=precision)
        g_r = torch.ones(ta.shape[0], device=ta.device)
        g_c = torch.ones(vb.shape[0], device=ta.device)
        slot_backward(ta, vb, valid, scale, positives, 0, True, True, pool, 0.1, rs, cs, g_r, g_c,
                      precision=precision)

    big = 2**21 + 64  # [big, 1024] rows: above 2^31 elements
    cases = []
    for dt in _DTYPES:
        name = str(dt)[6:]
        for prec in ("tf32x3", "tf32", "ieee") if dt == torch.float32 else ("tf32x3",):
            def small(dt=dt, prec=prec):
                x = torch.zeros(64, 64, dtype=dt)
                infonce(x, x, precision=prec)

            def masked(dt=dt, prec=prec):
                x = torch.zeros(64, 64, dtype=dt)
                infonce(x, x, torch.eye(64, dtype=torch.bool), rows=True, cols=False, precision=prec)

            def unaligned(dt=dt, prec=prec):
                infonce(unaligned_rows(48, 100, dtype=dt), unaligned_rows(40, 100, dtype=dt), offset=1,
                        precision=prec)

            def large(dt=dt, prec=prec):
                x = meta(big, 1024, dtype=dt)
                infonce(x, x, precision=prec)

            def slots(dt=dt, prec=prec):
                for pool in POOL_IDS:
                    x = torch.zeros(32, 4, 64, dtype=dt)
                    slot(x, x, torch.ones(32, 4, dtype=torch.bool), pool, prec)
                    if prec != "tf32x3":  # the other precisions: every kernel once, small
                        continue
                    x = meta(2**17 + 8, 16, 1024, dtype=dt)
                    slot(x, x, meta(2**17 + 8, 16, dtype=torch.bool), pool, prec,
                         positives=meta(2**17 + 8, 2**17 + 8, dtype=torch.bool))

            every = (("small", small), ("slots", slots))
            if prec == "tf32x3":
                every += (("masked rows", masked), ("unaligned", unaligned), ("large", large))
            for label, fn in every:
                cases.append((f"{name},{prec},{label}", fn))
    return cases
