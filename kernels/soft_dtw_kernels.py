"""The @triton.jit code of soft-DTW: the per-cell forward/backward (`_fwd_cells`,
`_bwd_cells`) and the three launch shapes (one pair, packed pairs, tiles) that share it.
The launchers, layouts and launch rules are in `kernels/soft_dtw.py`, whose docstring
gives the parallelisation and the state layout."""
from __future__ import annotations

import triton
import triton.language as tl

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
