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
which passes on nothing); the backward reads only those weights and E, no C, no R,
no exp (why: docs/soft_dtw.md, "The state between forward and backward").
The weights are stored diagonal-major, so the reads and writes of a chunk are
contiguous (coalesced) runs; only C and E, which live row-major for the caller,
are read with a stride of M-1 along a diagonal (each cache line is then reused by
32 consecutive diagonals):
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

from ._launch import on_input_device
from .soft_dtw_kernels import (
    _soft_dtw_bwd_kernel,
    _soft_dtw_bwd_packed_kernel,
    _soft_dtw_bwd_tiled_kernel,
    _soft_dtw_fwd_kernel,
    _soft_dtw_fwd_packed_kernel,
    _soft_dtw_fwd_tiled_kernel,
)

BLOCKS = (16, 32, 64, 128, 256, 512, 1024)
PACK_BLOCK = 128  # lanes of a program that packs several pairs (soft_dtw_pairs)
TILE = 64  # side of the tiled path's tiles (soft_dtw_tile)
TILES = (16, 32, 64, 128)  # tile sides the launchers accept
TILED_MAX_B = 132  # below this many pairs (an H100's SMs) long pairs are tiled


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
