"""Triton kernels for the contrastive losses (docs/design.md §3.3, §3.5).

The grid is (row blocks, column splits). Program (i, s) owns a block of rows of X and
streams the column tiles of split s of Y (flash-style): the forward keeps an online
log-sum-exp per row over the split's columns and over the row's positives among them,
and writes each as a partial m_s + log l_s at [s, row]; the merge, a log-sum-exp over
the splits (m = max m_s, l = Σ_s l_s·e^{m_s − m}, torch's fixed-order reduction on the
tiny partials), gives the row statistics. The backward recomputes each logit tile from
X and Y, forms dL/ds from the saved statistics and accumulates split s's share of dX in
slice s of an fp32 `[splits, N, D]` buffer; one sum over the splits (in a fixed order)
finishes dX, and dscale is summed from per-program partials the same way. Nothing of
size B×B (or B×B×T) is written and nothing uses atomics, so results are bitwise the
same run to run. `column_splits` chooses the splits from the problem size (a constant
SM count, no GPU query): one split once the row blocks alone reach a few hundred
programs. The column direction is the same kernel with X and Y swapped and the positive
mask read through transposed strides.

A program's partial dX rows are updated by read-modify-write (race-free: no two
programs share a (split, row)), chunked over D so any feature size fits without
register spills; a CTA barrier after each column tile keeps the next tile's reads
behind this tile's writes.

The slot kernels use the same 2-D grid and merge and loop over the T frames inside a
tile: the pooled cosine (max: running maximum and its first argmax; lse: online
log-sum-exp of cos/τ) is formed in registers, and the backward recomputes the per-frame
cosines to spread dL/ds over the frames (their dX buffer is `[splits, N, T, D]`).
Validity and frame counts are addressed through (row, column) strides, one of which is
zero, so the same kernel serves both directions.

Precision: float32 inputs use `tl.dot(input_precision=...)`, "tf32x3" by default
(about fp32 accuracy on tensor cores); fp16/bf16 inputs form the logits on their
tensor-core path with fp32 accumulation. The backward keeps dL/ds in fp32 for every
dtype: for fp16/bf16 the dX product widens Y to fp32 and runs as a TF32 dot (fp16's
10-bit mantissa, fp32's exponent range; exact on fp16 and bf16 values), so dL/ds of
order (softmax − target)/B -- below fp16's normal range at large B -- is not flushed.
"""
from __future__ import annotations

import torch
import triton

from ._launch import TRITON_DTYPES, on_input_device
from .contrastive_kernels import _infonce_bwd_kernel, _infonce_fwd_kernel, _slot_bwd_kernel, _slot_fwd_kernel

POOL_IDS = {"max": 1, "lse": 2}

SM_COUNT = 132  # an H100 SXM's SMs: a constant, so the launch never queries a GPU
PROGRAMS_PER_SM = 4
SPLIT_BUFFER_BYTES = 256 << 20
MIN_SPLIT_TILES = {"fwd": 2, "bwd": 4}


def column_splits(n: int, m: int, block_m: int, block_n: int, pass_: str, split_bytes: int = 0) -> int:
    """Column splits of a launch over n rows and m columns (grid axis 1): a power of two.

    Doubled from 1 while the grid (row blocks x splits) is under PROGRAMS_PER_SM programs
    per SM of a SM_COUNT-SM GPU (132, an H100; fixed, so no GPU is queried and every
    machine launches the same grid), every split keeps at least MIN_SPLIT_TILES[pass_]
    column tiles, and the backward's partial-dX buffer (`split_bytes` = N·D·4 per split)
    stays within SPLIT_BUFFER_BYTES. Row blocks alone filling the target give 1.

    The forward's splits cost only their [splits, N] log-sum-exp partials, so a split
    may be as short as 2 tiles; the backward's cost a fp32 [N, D] dX block each (zeroed,
    then read by the reduction), so it keeps 4 tiles per split.
    """
    row_blocks = triton.cdiv(n, block_m)
    tiles = triton.cdiv(m, block_n)
    splits = 1
    while (row_blocks * splits < PROGRAMS_PER_SM * SM_COUNT and tiles >= 2 * splits * MIN_SPLIT_TILES[pass_]
           and 2 * splits * split_bytes <= SPLIT_BUFFER_BYTES):
        splits *= 2
    return splits


def _split_grid(n: int, m: int, cfg: dict, pass_: str, split_bytes: int = 0):
    """(grid, splits, cols_per_split): splits that would be empty are dropped, so the
    last one may be short and none is empty."""
    splits = column_splits(n, m, cfg["BLOCK_M"], cfg["BLOCK_N"], pass_, split_bytes)
    per = max(1, triton.cdiv(triton.cdiv(m, cfg["BLOCK_N"]), splits)) * cfg["BLOCK_N"]
    splits = max(1, triton.cdiv(m, per))
    return (triton.cdiv(n, cfg["BLOCK_M"]), splits), splits, per


def config(kernel: str, dtype: torch.dtype, precision: str = "tf32x3") -> dict:
    """Tiles, warps, stages (and where needed a register budget) per kernel, dtype and
    float32 precision. Every combination compiles without spills or stack on sm_80 and
    sm_90 with triton 3.6.0, 3.7.1 (pinned), 3.8.0 and 3.9.0. The elementwise work per
    tile (masks, two online log-sum-exps, the gradient's exponentials) bounds the tile
    size, not the dots; the slot kernels also carry the running pool statistics over T.

    Why each choice (spills as ptxas reported them, before the change):
    - fwd: 64x32 rows x columns, 8 warps, 2 stages; fp32 "ieee" (FMA dots) at 1 stage:
      at 2 the sm_80 build of triton 3.8/3.9 spilled 16 bytes at 80 registers.
    - bwd: 32x32, one stage; 8 warps for fp32 (at 4 the tf32x3 build sat at 255
      registers and spilled on 3.8/3.9), 4 for fp16/bf16.
    - slot_fwd / slot_bwd: 32x32 with a D-chunk of 16, 8 warps, one stage (with 3.7.1,
      at 2 stages the slot forward spilled 8-24 bytes on sm_90; at 4 warps the fp16/bf16
      slot backward 8-24 bytes). Left to itself, ptxas holds some of these builds to
      64-128 registers at 8 warps (96-168 at 4 warps) and spills 8-104 bytes (3.6: fp32
      tf32 and fp16/bf16 slot forward, fp16/bf16 slot backward; 3.8/3.9: fp16/bf16 and
      fp32 ieee slot backward). `maxnreg=255` for those combinations lets it use what
      it needs: up to ~160 registers for fp16/bf16 with 3.7.1, so one 8-warp program per
      SM instead of two -- the price of no spills until a GPU run says otherwise. The
      other combinations keep ptxas's own choice.
    """
    low = dtype != torch.float32
    if kernel == "fwd":
        return dict(BLOCK_M=64, BLOCK_N=32, BLOCK_D=32, num_warps=8,
                    num_stages=1 if not low and precision == "ieee" else 2)
    if kernel == "bwd":
        return dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=32, num_warps=4 if low else 8, num_stages=1)
    cfg = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=16, num_warps=8, num_stages=1)
    budget = {"slot_fwd": ("tf32",), "slot_bwd": ("ieee",)}[kernel]
    if low or precision in budget:
        cfg["maxnreg"] = 255
    return cfg


def _launch_cfg(kernel: str, dtype: torch.dtype, precision: str):
    """(constexpr tiles, launch options) of `config`."""
    cfg = config(kernel, dtype, precision)
    launch = {k: cfg.pop(k) for k in ("num_warps", "num_stages", "maxnreg") if k in cfg}
    return cfg, launch


def _precision(dtype: torch.dtype, precision: str) -> str:
    """Of the logit dots: fp16/bf16 take their own tensor-core path ("ieee" = no TF32 split)."""
    return precision if dtype == torch.float32 else "ieee"


def _dx_precision(dtype: torch.dtype, precision: str) -> str:
    """Of the backward's dX dots, whose left operand dL/ds is fp32: fp16/bf16 inputs widen
    their right operand to fp32 and run a TF32 dot, exact for both (10- and 7-bit mantissas)."""
    return precision if dtype == torch.float32 else "tf32"


def _check(*ts: torch.Tensor) -> None:
    for t in ts:
        if t.dtype not in TRITON_DTYPES:
            raise TypeError(f"triton contrastive kernels support {TRITON_DTYPES}, got {t.dtype}")


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


def _merge_lse(part: torch.Tensor) -> torch.Tensor:
    """[2, splits, N] per-split log-sum-exps -> [2, N]. m + log l per split, so the merge
    m = max_s m_s, l = Σ_s l_s·e^{m_s − m} is a log-sum-exp over the splits (torch's, a
    fixed-order reduction: deterministic); one split needs none."""
    return part[:, 0] if part.shape[1] == 1 else torch.logsumexp(part, 1)


def _reduce_splits(buf: torch.Tensor, dscale: torch.Tensor):
    """The per-split partial dX `[splits, N, ...]` and dscale, summed in a fixed order."""
    return (buf[0] if buf.shape[0] == 1 else buf.sum(0)), dscale.sum()


def _lse_pass(x, y, scale, positives, offset, transpose, precision):
    n, d = x.shape
    m = y.shape[0]
    cfg, launch = _launch_cfg("fwd", x.dtype, precision)
    grid, splits, per = _split_grid(n, m, cfg, "fwd")
    part = torch.empty(2, splits, n, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _infonce_fwd_kernel[grid](
        x, y, scale, pos, part[0], part[1], n, m, d, offset, has_pos, per, x.stride(0), y.stride(0), spr, spc,
        PRECISION=_precision(x.dtype, precision), **launch, **cfg)
    return _merge_lse(part)


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
        row_stats = _lse_pass(a, b, s, positives, offset, False, precision)
    if cols:
        col_stats = _lse_pass(b, a, s, positives, -offset, True, precision)
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _grad_pass(x, y, scale, positives, offset, transpose, sx, gx, sy, gy, x_on, y_on, precision):
    n, d = x.shape
    m = y.shape[0]
    cfg, launch = _launch_cfg("bwd", x.dtype, precision)
    grid, splits, per = _split_grid(n, m, cfg, "bwd", split_bytes=n * d * 4)
    dx = torch.zeros(splits, n, d, dtype=torch.float32, device=x.device)
    dscale = torch.empty(splits, grid[0], dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _infonce_bwd_kernel[grid](
        x, y, scale, pos, sx[0], sx[1], gx, sy[0], sy[1], gy, dx, dscale,
        n, m, d, offset, has_pos, int(x_on), int(y_on), per, x.stride(0), y.stride(0), spr, spc,
        PRECISION=_precision(x.dtype, precision), DX_PRECISION=_dx_precision(x.dtype, precision), **launch,
        **cfg)
    return _reduce_splits(dx, dscale)


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
    cfg, launch = _launch_cfg("slot_fwd", x.dtype, precision)
    grid, splits, per = _split_grid(n, m, cfg, "fwd")
    part = torch.empty(2, splits, n, dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _slot_fwd_kernel[grid](
        x, y, valid, count, scale, pos, part[0], part[1], n, m, t, d, offset, has_pos, float(tau), per,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), stride_pr=spr, stride_pc=spc,
        POOL=POOL_IDS[pool], PRECISION=_precision(x.dtype, precision), **launch,
        **_slot_geometry(x, valid_on_rows, valid, count), **cfg)
    return _merge_lse(part)


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
        row_stats = _slot_lse_pass(ta, vb, v8, count, False, s, positives, offset, False, pool, tau, precision)
    if cols:
        col_stats = _slot_lse_pass(vb, ta, v8, count, True, s, positives, -offset, True, pool, tau, precision)
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _slot_grad_pass(x, y, valid, count, valid_on_rows, scale, positives, offset, transpose, sx, gx, sy, gy,
                    x_on, y_on, pool, tau, precision):
    n, t, d = x.shape
    m = y.shape[0]
    cfg, launch = _launch_cfg("slot_bwd", x.dtype, precision)
    grid, splits, per = _split_grid(n, m, cfg, "bwd", split_bytes=n * t * d * 4)
    dx = torch.zeros(splits, n, t, d, dtype=torch.float32, device=x.device)
    dscale = torch.empty(splits, grid[0], dtype=torch.float32, device=x.device)
    pos, has_pos, spr, spc = _pos_args(positives, transpose, x.device)
    _slot_bwd_kernel[grid](
        x, y, valid, count, scale, pos, sx[0], sx[1], gx, sy[0], sy[1], gy, dx, dscale,
        n, m, t, d, offset, has_pos, int(x_on), int(y_on), float(tau), per,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), stride_pr=spr, stride_pc=spc,
        POOL=POOL_IDS[pool], PRECISION=_precision(x.dtype, precision),
        DX_PRECISION=_dx_precision(x.dtype, precision), **launch,
        **_slot_geometry(x, valid_on_rows, valid, count), **cfg)
    return _reduce_splits(dx, dscale)


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
    float32 precision: diagonal positives in both directions and both slot pools, at a
    size with one column split and at one with several (B = 1024); at the default
    precision also a dense positive mask with one direction (flags of 1 become the JIT's
    constants), unaligned row views with an offset of 1, and inputs above 2^31 elements
    (one split: their row blocks fill the GPU), for the compile check."""
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
    for dt in TRITON_DTYPES:
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

            def large(dt=dt, prec=prec):  # row blocks fill the GPU: one column split
                x = meta(big, 1024, dtype=dt)
                infonce(x, x, precision=prec)

            def split(dt=dt, prec=prec):  # B = 1024: column splits (16 forward, 8 backward)
                x = meta(1024, 512, dtype=dt)
                infonce(x, x, precision=prec)

            def slots(dt=dt, prec=prec):
                for pool in POOL_IDS:
                    x = torch.zeros(32, 4, 64, dtype=dt)
                    slot(x, x, torch.ones(32, 4, dtype=torch.bool), pool, prec)
                    x = meta(1024, 8, 256, dtype=dt)  # column splits
                    slot(x, x, meta(1024, 8, dtype=torch.bool), pool, prec)
                    if prec != "tf32x3":  # the other precisions: every kernel once, small
                        continue
                    x = meta(2**17 + 8, 16, 1024, dtype=dt)
                    slot(x, x, meta(2**17 + 8, 16, dtype=torch.bool), pool, prec,
                         positives=meta(2**17 + 8, 2**17 + 8, dtype=torch.bool))

            every = (("small", small), ("split", split), ("slots", slots))
            if prec == "tf32x3":
                every += (("masked rows", masked), ("unaligned", unaligned), ("large", large))
            for label, fn in every:
                cases.append((f"{name},{prec},{label}", fn))
    return cases
