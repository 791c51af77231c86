"""Triton soft-DTW (Cuturi & Blondel 2017): forward DP and expected-alignment backward.

Parallelisation: the anti-diagonals t = row + col (0-based) are swept in order; the
cells of one diagonal are independent, and diagonal t reads only diagonals t-1 and
t-2, which earlier iterations wrote to global memory; a `tl.debug_barrier()`
(bar.sync on the GPU: it also orders the CTA's global stores before later loads)
separates diagonals. Three launch shapes (`soft_dtw_tile`, then `soft_dtw_plan`, pick
one from B, N, M and the widest diagonal W, shapes only):
  * one pair per program (`_soft_dtw_fwd_kernel` / `_soft_dtw_bwd_kernel`): the
    program walks each diagonal in chunks of BLOCK = next_pow2(W) lanes (up to 1024;
    a longer diagonal takes several chunks); grid = B;
  * P pairs per program (`_soft_dtw_*_packed_kernel`, `soft_dtw_pairs`): for short
    diagonals (W <= 64) and B >= 2, a program's 128 lanes are P = 128 // LANES lane
    groups of LANES = next_pow2(W) lanes, group p holding pair pid*P + p, so a
    diagonal of any of its pairs is one chunk. The groups step through the diagonals
    together (one barrier per diagonal for all P pairs; each lane computes its own
    pair's bounds), to the program's longest pair; grid = ceil(B / P). The backward
    steps down from the program's last diagonal and gives each pair's end cell E = 1
    when it reaches that pair's own last diagonal;
  * tiles (`_soft_dtw_*_tiled_kernel`, `soft_dtw_tile`): for a batch too small to fill
    a GPU (B < 132) with diagonals crossing >= 2 tiles (W >= 2*TILE), each pair's DP is
    cut into T x T tiles (T = TILE = 64) and one kernel is launched per anti-diagonal
    of tiles, ceil(N/T) + ceil(M/T) - 1 launches (the backward makes them in reverse);
    program (pair, tile) sweeps its tile's 2T-1 inner diagonals with a barrier between
    them, reading the predecessors (successors) in neighbouring tiles that earlier
    launches wrote. The launch boundary is the device-wide barrier between tiles. R is
    kept for every cell ([B, cells], the layout of one weight), in place of the ring;
    the backward reads E of successors from E itself.
All shapes run the same per-cell code (`_fwd_cells`, `_bwd_cells`), so they give the
same values and E; the state's layout does not depend on the packing or tiling.

State. The forward keeps R only for the last three diagonals (a ring [B, 3, N],
indexed by row) and stores, per cell, the soft-min weights it gave its up and left
predecessors (the diagonal one is 1 minus their sum; w_up = -1 marks a cell at +inf,
which passes on nothing). The backward recurrence
E[p] = Σ_s E[s]·e^{(R[s] − C[s] − R[p])/γ} reuses exactly those weights
(w(p→s) = e^{(min_s − R[p])/γ}/Σ_s is the soft-min weight s gave p), so it reads
neither C nor R and needs no exp. Why not R, as pytorch-softdtw-cuda keeps: rebuilt
from float32 R, a weight carries ulp(R)/γ of error, and R grows with the length
(gradients 6e-4 off at γ = 0.01 against 1e-5 from stored weights; the C++ kernels
made the same change). The weights are stored diagonal-major, so the reads and
writes of a chunk are contiguous (coalesced) runs; only C and E, which live
row-major for the caller, are read with a stride of M-1 along a diagonal (each
cache line is then reused by 32 consecutive diagonals):
  * no band (or a band too wide to save memory): pair b's n_b x m_b cells packed
    diagonal after diagonal, n_b*m_b slots per weight;
  * a Sakoe-Chiba band of half-width w: a band meets each anti-diagonal in at
    most w+1 cells (the band is an interval |row*K - t*(n-1)| <= w*(min(n,m)-1)
    with K = n+m-2 >= 2*(min(n,m)-1)), so each diagonal gets W = min(w+1, N, M)
    slots: (N+M-1)*W per weight, linear in the length for a fixed band.
The state is [B, 2*cells] (w_up, then w_left); the ops layer treats it as opaque and
hands it back to `soft_dtw_backward`.

Per-pair lengths and the band are handled in the kernel: every diagonal is
clipped to the rows [lo, hi] that lie in the pair's block and band, and a
neighbour outside [lo, hi] of its own diagonal reads as R = +inf (weight 0, E = 0),
which also supplies the R[i,0] = R[0,j] = +inf border; R[0,0] = 0 enters as the
diagonal predecessor of cell (0,0). Exponentials are exp2/log2 with log2(e)/gamma
folded into one multiplier (libdevice is unavailable in the interpreter).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import on_input_device

BLOCKS = (16, 32, 64, 128, 256, 512, 1024)
PACK_BLOCK = 128  # lanes of a program that packs several pairs (soft_dtw_pairs)
TILE = 64  # side of the tiled path's tiles (soft_dtw_tile)
TILES = (16, 32, 64, 128)  # tile sides the launchers accept
TILED_MAX_B = 132  # below this many pairs (an H100's SMs) long pairs are tiled
_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _diag(t, n, m, w, W, banded):
    """Rows [lo, hi] of pair (n, m)'s cells on anti-diagonal t that lie in the band, and
    `base` such that the R slot of row r is base + r. All scalars int64; t may be < 0."""
    lo = tl.maximum(t - m + 1, 0)
    hi = tl.minimum(t, n - 1)
    # Band |r*(m-1) - c*(n-1)| <= w*l1 with c = t - r  <=>  |r*k - t*(n-1)| <= w*l1:
    # numerators are clamped to >= 0 so the integer divisions never see a negative.
    l1 = tl.minimum(n, m) - 1
    k = tl.maximum(n + m - 2, 1)
    tn = tl.maximum(t, 0) * (n - 1)
    band_lo = (tl.maximum(tn - w * l1, 0) + k - 1) // k
    band_hi = tl.maximum(tn + w * l1, 0) // k
    use_band = (w >= 0) & (l1 > 0)
    blo = tl.where(use_band, tl.maximum(lo, band_lo), lo)
    bhi = tl.where(use_band, tl.minimum(hi, band_hi), hi)
    # Packed layout: diagonals of the n x m block back to back; diagonal t starts after
    # sum_{u<t} width(u), width(u) = (u+1) - max(0, u+1-p) - max(0, u+1-q).
    p = tl.minimum(n, m)
    q = tl.maximum(n, m)
    tp = tl.maximum(t - p, 0)
    tq = tl.maximum(t - q, 0)
    packed = (t * (t + 1) - tp * (tp + 1) - tq * (tq + 1)) // 2 - lo
    base = tl.where(banded != 0, t * W - blo, packed)
    return blo, bhi, base


@triton.jit
def _fwd_cells(c_base, r_cur, r_prev, r_prev2, wu_ptr, wl_ptr, r, ok, t, lo1, hi1, lo2, hi2, M, inv, g_ln2):
    """One chunk of cells (rows r where ok) of anti-diagonal t: R into the ring slot
    r_cur + r, the up/left soft-min weights to wu_ptr + r / wl_ptr + r. Shared by both
    forward kernels, so the per-cell arithmetic is the same whatever the packing; the
    pointers and bounds may be scalars (one pair) or per-lane vectors (packed pairs)."""
    inf = float("inf")
    col = t - r
    cost = tl.load(c_base + r * M + col, mask=ok, other=0.0)
    up_ok = ok & (r - 1 >= lo1) & (r - 1 <= hi1)
    r_up = tl.load(r_prev + r - 1, mask=up_ok, other=inf)
    left_ok = ok & (r >= lo1) & (r <= hi1)
    r_left = tl.load(r_prev + r, mask=left_ok, other=inf)
    diag_ok = ok & (r - 1 >= lo2) & (r - 1 <= hi2)
    r_diag = tl.load(r_prev2 + r - 1, mask=diag_ok, other=inf)
    r_diag = tl.where(t == 0, 0.0, r_diag)  # R[0,0] = 0 precedes cell (0,0) only
    mn = tl.minimum(tl.minimum(r_up, r_left), r_diag)
    finite = mn < inf
    # shift by the minimum: the largest term is exp2(0) = 1, so the sum is in
    # [1, 3]; an all-inf triple keeps shift 0 and is replaced by +inf below.
    shift = tl.where(finite, mn, 0.0)
    e_up = tl.exp2((shift - r_up) * inv)
    e_left = tl.exp2((shift - r_left) * inv)
    tot = tl.where(finite, e_up + e_left + tl.exp2((shift - r_diag) * inv), 1.0)
    val = tl.where(finite, cost + shift - g_ln2 * tl.log2(tot), inf)
    tl.store(r_cur + r, val, mask=ok)
    # A cell at +inf (no finite predecessor, or an infinite cost) passes no mass on:
    # w_up = -1 marks it, as its diagonal weight 1 - w_up - w_left must be 0 too.
    live = val < inf
    rinv = 1.0 / tot
    tl.store(wu_ptr + r, tl.where(live, e_up * rinv, -1.0), mask=ok)
    tl.store(wl_ptr + r, tl.where(live, e_left * rinv, 0.0), mask=ok)


@triton.jit
def _bwd_cells(e_base, wu_base, wl_base, r, ok, t, lo1, hi1, base1, lo2, hi2, base2, M):
    """E of one chunk of cells (rows r where ok) of anti-diagonal t, from E and the
    forward's weights of their successors on diagonals t+1 (lo1, hi1, base1) and t+2.
    Shared by both backward kernels (scalars for one pair, per-lane vectors packed)."""
    col = t - r
    # successors (r+1, col) and (r, col+1) on diagonal t+1, (r+1, col+1) on t+2,
    # each weighing what it gave this cell in the forward (0 outside its range)
    down_ok = ok & (r + 1 >= lo1) & (r + 1 <= hi1)
    right_ok = ok & (r >= lo1) & (r <= hi1)
    diag_ok = ok & (r + 1 >= lo2) & (r + 1 <= hi2)
    e_down = tl.load(e_base + (r + 1) * M + col, mask=down_ok, other=0.0)
    e_right = tl.load(e_base + r * M + col + 1, mask=right_ok, other=0.0)
    e_diag = tl.load(e_base + (r + 1) * M + col + 1, mask=diag_ok, other=0.0)
    w_down = tl.maximum(tl.load(wu_base + base1 + r + 1, mask=down_ok, other=0.0), 0.0)
    w_right = tl.load(wl_base + base1 + r, mask=right_ok, other=0.0)
    # the diagonal weight is 1 - up - left (rounding can take it a hair below 0),
    # and 0 from a cell at +inf (w_up = -1)
    wu_d = tl.load(wu_base + base2 + r + 1, mask=diag_ok, other=-1.0)
    wl_d = tl.load(wl_base + base2 + r + 1, mask=diag_ok, other=0.0)
    w_diag = tl.where(wu_d < 0.0, 0.0, tl.maximum(1.0 - wu_d - wl_d, 0.0))
    return e_down * w_down + e_right * w_right + e_diag * w_diag


@triton.jit
def _soft_dtw_fwd_kernel(
    C, WGT, RING, GAMMA, XLEN, YLEN, OUT,
    N, M, CELLS, w, W, banded,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    # Clamped so that a malformed length (the ops layer rejects them) can never reach
    # memory outside the pair's slice; n = 0 or m = 0 gives empty loops.
    n = tl.minimum(tl.maximum(tl.load(XLEN + b).to(tl.int64), 0), N)
    m = tl.minimum(tl.maximum(tl.load(YLEN + b).to(tl.int64), 0), M)
    gamma = tl.load(GAMMA + b)
    inv = _LOG2E / gamma
    g_ln2 = gamma * _LN2
    w64 = tl.cast(w, tl.int64)  # tl.cast, not .to: an argument equal to 1 may arrive as a constexpr
    W64 = tl.cast(W, tl.int64)
    N64 = tl.cast(N, tl.int64)
    c_base = C + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    ring = RING + b * 3 * N64  # R of diagonal t at ring[(t % 3) * N + row]
    lanes = tl.arange(0, BLOCK)
    inf = float("inf")
    # (lo, hi) of diagonals t-1 and t-2 carried across iterations: the int64 divisions
    # in _diag are the expensive scalar work of a step.
    lo1, hi1, _ = _diag(w64 * 0 - 1, n, m, w64, W64, banded)
    lo2, hi2, _ = _diag(w64 * 0 - 2, n, m, w64, W64, banded)
    for t in range(0, n + m - 1):
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        r_cur = ring + (t % 3) * N64
        r_prev = ring + ((t + 2) % 3) * N64  # diagonal t-1
        r_prev2 = ring + ((t + 1) % 3) * N64  # diagonal t-2
        for c0 in range(0, hi - lo + 1, BLOCK):
            r = lo + c0 + lanes
            _fwd_cells(c_base, r_cur, r_prev, r_prev2, wu_base + base, wl_base + base, r, r <= hi, t,
                       lo1, hi1, lo2, hi2, M, inv, g_ln2)
        tl.debug_barrier()
        lo2, hi2 = lo1, hi1
        lo1, hi1 = lo, hi
    # lo1/hi1 now describe the last diagonal n+m-2, whose only cell is (n-1, m-1); the
    # band always contains it, the mask only guards a malformed pair.
    end_ok = (n - 1 >= lo1) & (n - 1 <= hi1)
    value = tl.load(ring + ((n + m - 2) % 3) * N64 + n - 1, mask=end_ok, other=inf)
    tl.store(OUT + b, value)


@triton.jit
def _soft_dtw_bwd_kernel(
    WGT, XLEN, YLEN, E,
    N, M, CELLS, w, W, banded,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    # Clamped so that a malformed length (the ops layer rejects them) can never reach
    # memory outside the pair's slice; n = 0 or m = 0 gives empty loops.
    n = tl.minimum(tl.maximum(tl.load(XLEN + b).to(tl.int64), 0), N)
    m = tl.minimum(tl.maximum(tl.load(YLEN + b).to(tl.int64), 0), M)
    w64 = tl.cast(w, tl.int64)  # tl.cast, not .to: an argument equal to 1 may arrive as a constexpr
    W64 = tl.cast(W, tl.int64)
    e_base = E + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    lanes = tl.arange(0, BLOCK)
    tl.store(e_base + (n - 1) * M + (m - 1), 1.0, mask=(n > 0) & (m > 0))
    tl.debug_barrier()
    # Successor diagonals t+1 and t+2, carried as in the forward sweep. The sweep
    # starts at t = n+m-3: its t+2 = n+m-1 lies past the block, so _diag gives an
    # empty range there and those successors contribute 0.
    last = n + m - 2
    lo1, hi1, base1 = _diag(last, n, m, w64, W64, banded)
    lo2, hi2, base2 = _diag(last + 1, n, m, w64, W64, banded)
    for k in range(0, n + m - 2):
        t = last - 1 - k
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        for c0 in range(0, hi - lo + 1, BLOCK):
            r = lo + c0 + lanes
            ok = r <= hi
            e = _bwd_cells(e_base, wu_base, wl_base, r, ok, t, lo1, hi1, base1, lo2, hi2, base2, M)
            tl.store(e_base + r * M + (t - r), e, mask=ok)
        tl.debug_barrier()
        lo2, hi2, base2 = lo1, hi1, base1
        lo1, hi1, base1 = lo, hi, base


@triton.jit
def _pack_lanes(pid, B, N, M, XLEN, YLEN, LANES, BLOCK: tl.constexpr):
    """Lane -> (pair b [int64], its lane j in the group, its lengths n, m, whether it holds
    a pair) for program `pid` of the packed kernels: P = BLOCK // LANES lane groups of
    LANES lanes, group p holding pair pid*P + p. A lane past the batch gets n = m = 0,
    which empties every diagonal range of its group."""
    lanes = tl.arange(0, BLOCK)
    group = lanes // LANES
    j = (lanes - group * LANES).to(tl.int64)
    b = pid.to(tl.int64) * (BLOCK // LANES) + group.to(tl.int64)
    live = b < B
    # clamped as in the one-pair kernels: a malformed length never leaves the pair's slice
    n = tl.minimum(tl.maximum(tl.load(XLEN + b, mask=live, other=0).to(tl.int64), 0), N)
    m = tl.minimum(tl.maximum(tl.load(YLEN + b, mask=live, other=0).to(tl.int64), 0), M)
    return b, j, n, m, live


@triton.jit
def _soft_dtw_fwd_packed_kernel(
    C, WGT, RING, GAMMA, XLEN, YLEN, OUT,
    B, N, M, CELLS, w, W, banded, LANES,
    BLOCK: tl.constexpr,
):
    """The forward for P = BLOCK // LANES pairs per program (LANES >= every diagonal's
    length, so each lane group covers its pair's diagonal in one chunk). The groups step
    through the diagonals together: diagonal t of every pair, one barrier, t + 1; a pair
    shorter than the program's longest has empty ranges past its own last diagonal."""
    b, j, n, m, live = _pack_lanes(tl.program_id(0), B, N, M, XLEN, YLEN, LANES, BLOCK)
    gamma = tl.load(GAMMA + b, mask=live, other=1.0)
    inv = _LOG2E / gamma
    g_ln2 = gamma * _LN2
    w64 = tl.cast(w, tl.int64)
    W64 = tl.cast(W, tl.int64)
    N64 = tl.cast(N, tl.int64)
    c_base = C + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    ring = RING + b * 3 * N64
    inf = float("inf")
    lo1, hi1, _ = _diag(w64 * 0 - 1, n, m, w64, W64, banded)
    lo2, hi2, _ = _diag(w64 * 0 - 2, n, m, w64, W64, banded)
    for t in range(0, tl.max(n + m - 1, axis=0)):
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        r = lo + j
        _fwd_cells(c_base, ring + (t % 3) * N64, ring + ((t + 2) % 3) * N64, ring + ((t + 1) % 3) * N64,
                   wu_base + base, wl_base + base, r, r <= hi, t, lo1, hi1, lo2, hi2, M, inv, g_ln2)
        tl.debug_barrier()
        lo2, hi2 = lo1, hi1
        lo1, hi1 = lo, hi
    # each pair's last diagonal n+m-2 holds its end cell (n-1, m-1), which the band always
    # contains; later diagonals of the program left that ring slot alone
    end_ok = live & (j == 0) & (n > 0) & (m > 0)
    value = tl.load(ring + ((n + m - 2) % 3) * N64 + n - 1, mask=end_ok, other=inf)
    tl.store(OUT + b, value, mask=live & (j == 0))


@triton.jit
def _soft_dtw_bwd_packed_kernel(
    WGT, XLEN, YLEN, E,
    B, N, M, CELLS, w, W, banded, LANES,
    BLOCK: tl.constexpr,
):
    """The backward for P pairs per program, the lane groups stepping down the diagonals
    together from the program's last one; each pair's end cell gets E = 1 when the sweep
    reaches its own last diagonal."""
    b, j, n, m, live = _pack_lanes(tl.program_id(0), B, N, M, XLEN, YLEN, LANES, BLOCK)
    w64 = tl.cast(w, tl.int64)
    W64 = tl.cast(W, tl.int64)
    e_base = E + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    last = tl.max(n + m - 2, axis=0)
    lo1, hi1, base1 = _diag(last + 1, n, m, w64, W64, banded)
    lo2, hi2, base2 = _diag(last + 2, n, m, w64, W64, banded)
    for k in range(0, last + 1):
        t = last - k
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        r = lo + j
        ok = r <= hi
        e = _bwd_cells(e_base, wu_base, wl_base, r, ok, t, lo1, hi1, base1, lo2, hi2, base2, M)
        # the end cell has no successor in its block: E = 1 there (the one-pair kernel
        # stores it before its sweep)
        e = tl.where((r == n - 1) & (t == n + m - 2), 1.0, e)
        tl.store(e_base + r * M + (t - r), e, mask=ok)
        tl.debug_barrier()
        lo2, hi2, base2 = lo1, hi1, base1
        lo1, hi1, base1 = lo, hi, base


@triton.jit
def _tile_rows(t, lo, hi, r0, c0, T):
    """Rows of diagonal t's range [lo, hi] that lie in the T x T tile at (r0, c0)."""
    return tl.maximum(lo, tl.maximum(r0, t - c0 - T + 1)), tl.minimum(hi, tl.minimum(r0 + T - 1, t - c0))


@triton.jit
def _tile_origin(d, N, M, XLEN, YLEN, T: tl.constexpr):
    """Program (tile k of tile-diagonal d, pair b) of the tiled kernels -> pair b [int64],
    its clamped lengths n, m, the tile's first row r0 and column c0, and whether the tile
    meets the pair's block (a tile past it sweeps no diagonal)."""
    b = tl.program_id(0).to(tl.int64)
    n = tl.minimum(tl.maximum(tl.load(XLEN + b).to(tl.int64), 0), N)
    m = tl.minimum(tl.maximum(tl.load(YLEN + b).to(tl.int64), 0), M)
    d64 = tl.cast(d, tl.int64)
    ti = tl.maximum(d64 - (M + T - 1) // T + 1, 0) + tl.program_id(1)
    r0 = ti * T
    c0 = (d64 - ti) * T
    inside = (r0 < n) & (c0 < m)
    return b, n, m, r0, c0, inside


@triton.jit(do_not_specialize=["d"])  # one compiled kernel for every tile-diagonal d
def _soft_dtw_fwd_tiled_kernel(
    C, WGT, RBUF, GAMMA, XLEN, YLEN, OUT,
    N, M, CELLS, w, W, banded, d,
    BLOCK: tl.constexpr,  # = T, the tile side: a tile's diagonal has at most T cells
):
    """The forward of the T x T tiles on tile-diagonal d (grid: pairs x tiles of d). The
    tile sweeps its 2T-1 inner anti-diagonals (global t = d*T + s) with a barrier between
    them; R lives in RBUF [B, CELLS] in the weights' diagonal-major layout (R of row r on
    diagonal t at base(t) + r), so predecessors in the tiles above/left (launch d-1) or
    diagonal (d-2) are read like those of the tile's own earlier diagonals."""
    b, n, m, r0, c0, inside = _tile_origin(d, N, M, XLEN, YLEN, BLOCK)
    gamma = tl.load(GAMMA + b)
    inv = _LOG2E / gamma
    g_ln2 = gamma * _LN2
    w64 = tl.cast(w, tl.int64)
    W64 = tl.cast(W, tl.int64)
    c_base = C + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    r_base = RBUF + b * CELLS
    lanes = tl.arange(0, BLOCK)
    t0 = r0 + c0
    lo1, hi1, base1 = _diag(t0 - 1, n, m, w64, W64, banded)
    lo2, hi2, base2 = _diag(t0 - 2, n, m, w64, W64, banded)
    # the tile's inner diagonals up to the pair's last one, n+m-2 (later ones are empty)
    steps = tl.where(inside, tl.minimum(2 * BLOCK - 1, n + m - 1 - t0), 0)
    for s in range(0, steps):
        t = t0 + s
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        tlo, thi = _tile_rows(t, lo, hi, r0, c0, BLOCK)
        r = tlo + lanes
        _fwd_cells(c_base, r_base + base, r_base + base1, r_base + base2, wu_base + base, wl_base + base, r,
                   r <= thi, t, lo1, hi1, lo2, hi2, M, inv, g_ln2)
        tl.debug_barrier()
        lo2, hi2, base2 = lo1, hi1, base1
        lo1, hi1, base1 = lo, hi, base
    # the tile holding the end cell (n-1, m-1) reports the value (after the barrier
    # above, which orders its store before this load)
    end = inside & (n - 1 < r0 + BLOCK) & (m - 1 < c0 + BLOCK)
    if end:
        lo, hi, base = _diag(n + m - 2, n, m, w64, W64, banded)
        end_ok = (n - 1 >= lo) & (n - 1 <= hi)
        value = tl.load(r_base + base + n - 1, mask=end_ok, other=float("inf"))
        tl.store(OUT + b, value)


@triton.jit(do_not_specialize=["d"])  # one compiled kernel for every tile-diagonal d
def _soft_dtw_bwd_tiled_kernel(
    WGT, XLEN, YLEN, E,
    N, M, CELLS, w, W, banded, d,
    BLOCK: tl.constexpr,  # = T, the tile side: a tile's diagonal has at most T cells
):
    """The backward of the tiles on tile-diagonal d, launched from the last tile-diagonal
    down: the tile sweeps its inner diagonals from the last, reading E of successors in
    the tiles below/right (launch d+1) or diagonal (d+2) from E itself; the end cell
    gets E = 1 (as in the packed backward)."""
    b, n, m, r0, c0, inside = _tile_origin(d, N, M, XLEN, YLEN, BLOCK)
    w64 = tl.cast(w, tl.int64)
    W64 = tl.cast(W, tl.int64)
    e_base = E + b * N * M
    wu_base = WGT + b * 2 * CELLS
    wl_base = wu_base + CELLS
    lanes = tl.arange(0, BLOCK)
    # from the tile's last inner diagonal, or the pair's last one n+m-2 if earlier
    t_last = tl.minimum(r0 + c0 + 2 * BLOCK - 2, n + m - 2)
    lo1, hi1, base1 = _diag(t_last + 1, n, m, w64, W64, banded)
    lo2, hi2, base2 = _diag(t_last + 2, n, m, w64, W64, banded)
    steps = tl.where(inside, t_last - r0 - c0 + 1, 0)
    for k in range(0, steps):
        t = t_last - k
        lo, hi, base = _diag(t, n, m, w64, W64, banded)
        tlo, thi = _tile_rows(t, lo, hi, r0, c0, BLOCK)
        r = tlo + lanes
        ok = r <= thi
        e = _bwd_cells(e_base, wu_base, wl_base, r, ok, t, lo1, hi1, base1, lo2, hi2, base2, M)
        e = tl.where((r == n - 1) & (t == n + m - 2), 1.0, e)
        tl.store(e_base + r * M + (t - r), e, mask=ok)
        tl.debug_barrier()
        lo2, hi2, base2 = lo1, hi1, base1
        lo1, hi1, base1 = lo, hi, base


# ------------------------------------------------------------------ launchers
def soft_dtw_layout(N: int, M: int, bandwidth: int) -> tuple[int, int, bool, int]:
    """(w, W, banded, S): the effective band (-1 = none), slots per diagonal, whether the
    weights use banded storage, and the state's slots per pair (two weights per cell
    slot) for a padded [N, M] cost."""
    w = -1 if bandwidth is None or bandwidth < 0 else int(bandwidth)
    # |r*(m-1) - c*(n-1)| <= (n-1)*(m-1) <= w*(min(n,m)-1) for any w >= max(n,m)-1:
    # such a band excludes nothing, and dropping it keeps w*l1 far from overflow.
    if w >= max(N, M) - 1:
        w = -1
    W = min(N, M) if w < 0 else min(w + 1, N, M)
    banded = w >= 0 and (N + M - 1) * W < N * M
    cells = (N + M - 1) * W if banded else N * M
    return w, W, banded, 2 * cells


def soft_dtw_config(W: int, block: int | None = None) -> dict:
    """BLOCK (lanes per diagonal chunk) and num_warps of the one-pair kernels. A diagonal
    never holds more than W cells, so BLOCK = next_pow2(W) up to 1024; longer diagonals
    are walked in chunks."""
    if block is None:
        block = min(BLOCKS[-1], max(BLOCKS[0], triton.next_power_of_2(W)))
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block}")
    return dict(BLOCK=block, num_warps=max(1, min(8, block // 64)), num_stages=1)


def soft_dtw_pairs(B: int, W: int) -> int:
    """P, the pairs per program the launchers pack for B pairs whose diagonals hold at
    most W cells (`soft_dtw_layout`); 1 = the one-pair kernels.

    Rule: a lane group of LANES = next_pow2(W) lanes covers any diagonal of a pair in one
    chunk, and a packed program has PACK_BLOCK = 128 lanes, so P = 128 // LANES pairs
    share a program whenever that is at least 2 (W <= 64: pairs with min(N, M) <= 64, or
    a band of half-width <= 63) and there are at least 2 pairs. Then the grid is
    ceil(B / P) programs in place of B, each still taking max(n_b + m_b - 1) diagonal
    steps with one barrier each. From shapes alone (no device query, no host sync)."""
    lanes = triton.next_power_of_2(max(1, W))
    if B < 2 or lanes > PACK_BLOCK // 2:
        return 1
    return PACK_BLOCK // lanes


def soft_dtw_plan(B: int, W: int, block: int | None = None, pairs: int | None = None) -> dict:
    """The launch both launchers make: pairs P per program (`soft_dtw_pairs` unless
    `pairs` is given; `block` alone asks for the one-pair kernels with that chunk width),
    LANES per pair, BLOCK lanes per program, num_warps, num_stages and the grid."""
    if pairs is None:
        pairs = 1 if block is not None else soft_dtw_pairs(B, W)
    if pairs == 1:
        return dict(pairs=1, LANES=None, grid=(B,), **soft_dtw_config(W, block))
    lanes = triton.next_power_of_2(max(1, W))
    if block is not None or pairs < 1 or pairs & (pairs - 1) or pairs * lanes > BLOCKS[-1]:
        raise ValueError(f"pairs must be a power of 2 with pairs * next_pow2(W) <= {BLOCKS[-1]} and no "
                         f"block, got pairs={pairs}, W={W}, block={block}")
    BLOCK = pairs * lanes
    # one lane per thread (up to 8 warps): a lane computes its own pair's diagonal
    # bounds, the work a one-pair program does once as scalars
    return dict(pairs=pairs, LANES=lanes, grid=(triton.cdiv(B, pairs),), BLOCK=BLOCK,
                num_warps=max(1, min(8, BLOCK // 32)), num_stages=1)


def soft_dtw_tile(B: int, N: int, M: int, W: int, tile: int | None = None) -> int:
    """T, the tile side of the tiled path for B pairs of a padded [N, M] cost whose
    diagonals hold at most W cells (`soft_dtw_layout`), or 0 for the one-program-per-pair
    paths (`soft_dtw_plan`). `tile` forces T (0 forces the other paths).

    Rule (shapes only, no device query): tile when the batch alone cannot fill a GPU,
    B < TILED_MAX_B = 132 (an H100's SMs), and a diagonal crosses at least two tiles,
    W >= 2*TILE (unbanded W = min(N, M) >= 128; a band of half-width >= 127). Then up to
    B * ceil(W / T) programs share each of the ceil(N/T) + ceil(M/T) - 1 launches in
    place of B programs walking N + M - 1 diagonals. The thresholds are a first guess
    awaiting a GPU measurement (docs/gpu_design.md)."""
    if tile is not None:
        if tile != 0 and tile not in TILES:
            raise ValueError(f"tile must be 0 or one of {TILES}, got {tile}")
        return tile
    return TILE if B < TILED_MAX_B and W >= 2 * TILE else 0


def _tiled_launches(N: int, M: int, T: int):
    """(d, grid) of each tile-diagonal's launch, in forward order."""
    TN, TM = triton.cdiv(N, T), triton.cdiv(M, T)
    return [(d, min(d, TN - 1) - max(0, d - TM + 1) + 1) for d in range(TN + TM - 1)]


def _tiled_opts(T: int) -> dict:
    return dict(BLOCK=T, num_warps=max(1, min(4, T // 32)), num_stages=1)


def _check(C: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor):
    if C.dim() != 3 or C.dtype != torch.float32:
        raise ValueError(f"C must be a float32 [B, N, M] tensor, got {C.dtype} {tuple(C.shape)}")
    B, N, M = C.shape
    if B < 1 or N < 1 or M < 1:
        raise ValueError(f"C must be non-empty, got shape {tuple(C.shape)}")
    for name, v in (("gamma", gamma), ("x_len", x_len), ("y_len", y_len)):
        if v.shape != (B,):
            raise ValueError(f"{name} must have shape [{B}], got {tuple(v.shape)}")
    dev = C.device
    return (C.contiguous(), gamma.to(dev, torch.float32).contiguous(),
            x_len.to(dev, torch.int32).contiguous(), y_len.to(dev, torch.int32).contiguous())


@on_input_device
def soft_dtw_forward(C: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor,
                     bandwidth: int = -1, *, block: int | None = None,
                     pairs: int | None = None, tile: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-DTW values of a precomputed cost.

    C [B, N, M] float32, gamma [B] (> 0), x_len / y_len [B] int32 (1 <= n_b <= N,
    1 <= m_b <= M), bandwidth = Sakoe-Chiba half-width w (-1 = no band).
    Returns (values [B] float32, state [B, S] float32): the soft-min weights in the
    layout `soft_dtw_backward` expects (see the module docstring; S from
    `soft_dtw_layout`). `tile` (tiled path's T, 0 = not tiled; `soft_dtw_tile`),
    `block` (one-pair kernels' chunk width) and `pairs` (pairs per program) override the
    launchers' choice; tests use them to exercise tiles, chunked diagonals and packings;
    `block` or `pairs` alone rules the tiled path out. Inputs are not validated beyond
    shapes: the ops layer does that. Nothing here reads a device value back to the host.
    """
    C, gamma, x_len, y_len = _check(C, gamma, x_len, y_len)
    B, N, M = C.shape
    w, W, banded, S = soft_dtw_layout(N, M, bandwidth)
    state = torch.empty(B, S, device=C.device, dtype=torch.float32)
    T = soft_dtw_tile(B, N, M, W, 0 if tile is None and (block is not None or pairs is not None) else tile)
    if T:
        # R of every cell, in one weight's layout; a pair with n or m = 0 reports +inf
        rbuf = torch.empty(B, S // 2, device=C.device, dtype=torch.float32)
        values = torch.full((B,), float("inf"), device=C.device, dtype=torch.float32)
        for d, grid in _tiled_launches(N, M, T):
            _soft_dtw_fwd_tiled_kernel[(B, grid)](C, state, rbuf, gamma, x_len, y_len, values, N, M, S // 2, w, W,
                                                  int(banded), d, **_tiled_opts(T))
        return values, state
    ring = torch.empty(B, 3, N, device=C.device, dtype=torch.float32)
    values = torch.empty(B, device=C.device, dtype=torch.float32)
    plan = soft_dtw_plan(B, W, block, pairs)
    opts = dict(BLOCK=plan["BLOCK"], num_warps=plan["num_warps"], num_stages=plan["num_stages"])
    if plan["pairs"] == 1:
        _soft_dtw_fwd_kernel[plan["grid"]](C, state, ring, gamma, x_len, y_len, values, N, M, S // 2, w, W,
                                           int(banded), **opts)
    else:
        _soft_dtw_fwd_packed_kernel[plan["grid"]](C, state, ring, gamma, x_len, y_len, values, B, N, M, S // 2,
                                                  w, W, int(banded), plan["LANES"], **opts)
    return values, state


@on_input_device
def soft_dtw_backward(C: torch.Tensor, state: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
                      y_len: torch.Tensor, bandwidth: int = -1, *,
                      block: int | None = None, pairs: int | None = None,
                      tile: int | None = None) -> torch.Tensor:
    """Expected alignment E [B, N, M] float32 = d value_b / d C_b (Algorithm 2 of Cuturi &
    Blondel, with the forward's soft-min weights), from the state that `soft_dtw_forward`
    returned for the same arguments (the state's layout does not depend on the packing
    or tiling, so `block`, `pairs` and `tile` need not match the forward's). E is 0
    outside each pair's n_b x m_b block, outside the band and where R = +inf. C and gamma
    are checked for shape only (the weights already hold what the recurrence needs from
    them)."""
    C, gamma, x_len, y_len = _check(C, gamma, x_len, y_len)
    B, N, M = C.shape
    w, W, banded, S = soft_dtw_layout(N, M, bandwidth)
    if state.shape != (B, S) or state.dtype != torch.float32:
        raise ValueError(f"state must be the float32 [{B}, {S}] tensor soft_dtw_forward returned for "
                         f"this C and bandwidth, got {state.dtype} {tuple(state.shape)}")
    E = torch.zeros(B, N, M, device=C.device, dtype=torch.float32)
    T = soft_dtw_tile(B, N, M, W, 0 if tile is None and (block is not None or pairs is not None) else tile)
    if T:
        state = state.contiguous()
        for d, grid in reversed(_tiled_launches(N, M, T)):
            _soft_dtw_bwd_tiled_kernel[(B, grid)](state, x_len, y_len, E, N, M, S // 2, w, W, int(banded), d,
                                                  **_tiled_opts(T))
        return E
    plan = soft_dtw_plan(B, W, block, pairs)
    opts = dict(BLOCK=plan["BLOCK"], num_warps=plan["num_warps"], num_stages=plan["num_stages"])
    if plan["pairs"] == 1:
        _soft_dtw_bwd_kernel[plan["grid"]](state.contiguous(), x_len, y_len, E, N, M, S // 2, w, W, int(banded),
                                           **opts)
    else:
        _soft_dtw_bwd_packed_kernel[plan["grid"]](state.contiguous(), x_len, y_len, E, B, N, M, S // 2, w, W,
                                                  int(banded), plan["LANES"], **opts)
    return E


def static_cases():
    """Forward then backward for every launch choice, for the compile check: the one-pair
    kernels (B = 1, or W > 64) at every BLOCK (a diagonal of W = BLOCK cells picks it;
    tile=0 keeps W >= 128 off the tiled path), the packed kernels (B >= 2, W <= 64) at
    every LANES = 1..64 (P = 128..2 pairs per program) and the tiled kernels (B < 132,
    W >= 128) at every T of TILES, each banded and not; 1 x 1 pairs (every size argument the JIT's
    constant 1), lengths that do not divide by 16, and costs above 2^31 elements."""
    from ._static import meta

    def run(C, bandwidth=-1, **kw):
        B = C.shape[0]
        gamma = torch.ones(B, device=C.device)
        lens = torch.full((B,), C.shape[1], dtype=torch.int32, device=C.device)
        lens_y = torch.full((B,), C.shape[2], dtype=torch.int32, device=C.device)
        _, state = soft_dtw_forward(C, gamma, lens, lens_y, bandwidth, **kw)
        soft_dtw_backward(C, state, gamma, lens, lens_y, bandwidth, **kw)

    cases = [("1x1", lambda: run(torch.zeros(1, 1, 1))),
             ("1x1,packed", lambda: run(torch.zeros(3, 1, 1))),
             ("odd lengths", lambda: run(torch.zeros(1, 37, 53))),
             ("odd lengths,packed", lambda: run(torch.zeros(3, 37, 53))),
             ("large", lambda: run(meta(1024, 2048, 2048))),
             ("large,packed", lambda: run(meta(2**20, 64, 64))),
             ("large,packed,banded", lambda: run(meta(4096, 1024, 1024), bandwidth=15))]
    for block in BLOCKS:
        # tile=0: one pair with W >= 128 would otherwise take the tiled path
        cases.append((f"W={block}", lambda block=block: run(torch.zeros(1, block, block), tile=0)))
        cases.append((f"W={block},banded", lambda block=block: run(torch.zeros(1, 4 * block, 4 * block),
                                                                     bandwidth=block - 1, tile=0)))
    lanes = 1
    while lanes <= PACK_BLOCK // 2:
        cases.append((f"packed:LANES={lanes}", lambda lanes=lanes: run(torch.zeros(5, lanes, lanes + 3))))
        cases.append((f"packed:LANES={lanes},banded",
                       lambda lanes=lanes: run(torch.zeros(5, 4 * lanes, 4 * lanes), bandwidth=lanes - 1)))
        lanes *= 2
    # the tiled path (B < 132, W >= 2*TILE): the launchers' T = 64, banded and not, odd
    # lengths, costs above 2^31 elements, and every T the override accepts
    cases += [("tiled", lambda: run(torch.zeros(2, 256, 256))),
              ("tiled,banded", lambda: run(torch.zeros(2, 512, 512), bandwidth=200)),
              ("tiled,odd lengths", lambda: run(torch.zeros(3, 301, 333))),
              ("large,tiled", lambda: run(meta(131, 4096, 4096)))]
    for T in TILES:
        cases.append((f"tiled:T={T}", lambda T=T: run(torch.zeros(1, 4 * T + 3, 3 * T + 5), tile=T)))
        cases.append((f"tiled:T={T},banded", lambda T=T: run(torch.zeros(1, 8 * T, 8 * T), bandwidth=T, tile=T)))
    return cases
