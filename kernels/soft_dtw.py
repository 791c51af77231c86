"""Triton soft-DTW (Cuturi & Blondel 2017): forward DP and expected-alignment backward.

Parallelisation: one program per pair of the batch, sweeping anti-diagonals
t = row + col (0-based) in order; the cells of one diagonal are independent, so
a program walks each diagonal in chunks of BLOCK lanes (any length: a diagonal
longer than BLOCK just takes several chunks). Diagonal t reads only diagonals
t-1 and t-2, which earlier iterations wrote to global memory; a
`tl.debug_barrier()` (bar.sync on the GPU: it also orders the CTA's global
stores before later loads) separates diagonals.

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
            ok = r <= hi
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
            tl.store(wu_base + base + r, tl.where(live, e_up * rinv, -1.0), mask=ok)
            tl.store(wl_base + base + r, tl.where(live, e_left * rinv, 0.0), mask=ok)
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
            e = e_down * w_down + e_right * w_right + e_diag * w_diag
            tl.store(e_base + r * M + col, e, mask=ok)
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
    """BLOCK (lanes per diagonal chunk) and num_warps. A diagonal never holds more than W
    cells, so BLOCK = next_pow2(W) up to 1024; longer diagonals are walked in chunks."""
    if block is None:
        block = min(BLOCKS[-1], max(BLOCKS[0], triton.next_power_of_2(W)))
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block}")
    return dict(BLOCK=block, num_warps=max(1, min(8, block // 64)), num_stages=1)


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
                     bandwidth: int = -1, *, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-DTW values of a precomputed cost.

    C [B, N, M] float32, gamma [B] (> 0), x_len / y_len [B] int32 (1 <= n_b <= N,
    1 <= m_b <= M), bandwidth = Sakoe-Chiba half-width w (-1 = no band).
    Returns (values [B] float32, state [B, S] float32): the soft-min weights in the
    layout `soft_dtw_backward` expects (see the module docstring; S from
    `soft_dtw_layout`). `block` overrides the chunk width (tests use it to exercise
    chunked diagonals). Inputs are not validated beyond shapes: the ops layer does that.
    """
    C, gamma, x_len, y_len = _check(C, gamma, x_len, y_len)
    B, N, M = C.shape
    w, W, banded, S = soft_dtw_layout(N, M, bandwidth)
    state = torch.empty(B, S, device=C.device, dtype=torch.float32)
    ring = torch.empty(B, 3, N, device=C.device, dtype=torch.float32)
    values = torch.empty(B, device=C.device, dtype=torch.float32)
    cfg = soft_dtw_config(W, block)
    _soft_dtw_fwd_kernel[(B,)](C, state, ring, gamma, x_len, y_len, values, N, M, S // 2, w, W, int(banded),
                               BLOCK=cfg["BLOCK"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return values, state


@on_input_device
def soft_dtw_backward(C: torch.Tensor, state: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
                      y_len: torch.Tensor, bandwidth: int = -1, *,
                      block: int | None = None) -> torch.Tensor:
    """Expected alignment E [B, N, M] float32 = d value_b / d C_b (Algorithm 2 of Cuturi &
    Blondel, with the forward's soft-min weights), from the state that `soft_dtw_forward`
    returned for the same arguments. E is 0 outside each pair's n_b x m_b block, outside
    the band and where R = +inf. C and gamma are checked for shape only (the weights
    already hold what the recurrence needs from them)."""
    C, gamma, x_len, y_len = _check(C, gamma, x_len, y_len)
    B, N, M = C.shape
    w, W, banded, S = soft_dtw_layout(N, M, bandwidth)
    if state.shape != (B, S) or state.dtype != torch.float32:
        raise ValueError(f"state must be the float32 [{B}, {S}] tensor soft_dtw_forward returned for "
                         f"this C and bandwidth, got {state.dtype} {tuple(state.shape)}")
    E = torch.zeros(B, N, M, device=C.device, dtype=torch.float32)
    cfg = soft_dtw_config(W, block)
    _soft_dtw_bwd_kernel[(B,)](state.contiguous(), x_len, y_len, E, N, M, S // 2, w, W, int(banded),
                               BLOCK=cfg["BLOCK"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return E


def static_cases():
    """Forward then backward for every BLOCK (a diagonal of W = BLOCK cells picks it),
    banded and not, on 1 x 1 pairs (every size argument the JIT's constant 1), on
    lengths that do not divide by 16, and on [1024, 2048, 2048] costs (above 2^31
    elements), for the compile check."""
    from ._static import meta

    def run(C, bandwidth=-1):
        B = C.shape[0]
        gamma = torch.ones(B, device=C.device)
        lens = torch.full((B,), C.shape[1], dtype=torch.int32, device=C.device)
        lens_y = torch.full((B,), C.shape[2], dtype=torch.int32, device=C.device)
        _, state = soft_dtw_forward(C, gamma, lens, lens_y, bandwidth)
        soft_dtw_backward(C, state, gamma, lens, lens_y, bandwidth)

    cases = [("1x1", lambda: run(torch.zeros(2, 1, 1))),
             ("odd lengths", lambda: run(torch.zeros(3, 37, 53))),
             ("large", lambda: run(meta(1024, 2048, 2048)))]
    for block in BLOCKS:
        cases.append((f"W={block}", lambda block=block: run(torch.zeros(2, block, block))))
        cases.append((f"W={block},banded", lambda block=block: run(torch.zeros(2, 4 * block, 4 * block),
                                                                     bandwidth=block - 1)))
    return cases
