"""Triton batched kNN: one program per (row tile, layer), keys streamed through tl.dot.

Each similarity is packed with its column into one int64 key -- the float's
order-preserving bits high, (2^32 - 1 - col) low -- so "larger key" means
"higher similarity, then lower index": ties resolve exactly as on the CPU, and
max/min over keys need no separate argmax. A row keeps its running best K_PAD
keys in registers; a tile only pays for selection while some row of the tile
still has a key above its threshold (usually one or two rounds, not k).
No N x N matrix is written anywhere.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import TRITON_DTYPES, on_input_device

_MIN_KEY = -(2**63)
MAX_K = 128


@triton.jit
def _pack_keys(s, cols):
    s = s + 0.0  # -0.0 -> +0.0, so equal similarities pack to equal high words
    bits = s.to(tl.int32, bitcast=True)
    key32 = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    low = 4294967295 - cols.to(tl.int64)
    return (key32.to(tl.int64) << 32) | low


@triton.jit
def _knn_kernel(
    Q, K, OUT_V, OUT_I,
    M, N, D, k, self_shift,
    stride_ql, stride_qm, stride_kl, stride_kn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    K_PAD: tl.constexpr, EXCLUDE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    layer = tl.program_id(1).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    # element offsets in int64: rows * stride reaches 2^31 at M·D >= 2^31 (D = 1024 at
    # M = 2.1M), and a Python int argument below 2^31 arrives as i32
    q_rows = rows.to(tl.int64)[:, None] * stride_qm
    offs_d = tl.arange(0, BLOCK_D)
    slots = tl.arange(0, K_PAD)
    q_base = Q + layer * stride_ql
    k_base = K + layer * stride_kl
    # Distinct sentinels (MIN + slot) keep "replace the slot equal to the row
    # minimum" unambiguous; every real key is far above them.
    top = tl.zeros([BLOCK_M, K_PAD], dtype=tl.int64) + (-9223372036854775807 - 1) + slots[None, :]
    thr = tl.min(top, 1)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        k_cols = cols.to(tl.int64)[None, :] * stride_kn
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + offs_d
            d_ok = dd < D
            q = tl.load(q_base + q_rows + dd[None, :],
                        mask=row_ok[:, None] & d_ok[None, :], other=0.0)
            kt = tl.load(k_base + k_cols + dd[:, None],
                         mask=col_ok[None, :] & d_ok[:, None], other=0.0)
            acc = tl.dot(q, kt, acc, input_precision=PRECISION)
        keys = _pack_keys(acc, cols)
        valid = row_ok[:, None] & col_ok[None, :]
        if EXCLUDE:
            valid = valid & (cols[None, :] != rows[:, None] + self_shift)
        keys = tl.where(valid, keys, -9223372036854775807 - 1)
        best = tl.max(keys, 1)
        while tl.max((best > thr).to(tl.int32), 0) > 0:
            ins = best > thr
            top = tl.where((top == thr[:, None]) & ins[:, None], best[:, None], top)
            thr = tl.min(top, 1)
            keys = tl.where(keys == best[:, None], -9223372036854775807 - 1, keys)
            best = tl.max(keys, 1)
    top = tl.sort(top, 1, descending=True)
    hi = (top >> 32).to(tl.int32)
    bits = hi ^ ((hi >> 31) & 0x7FFFFFFF)
    vals = bits.to(tl.float32, bitcast=True)
    idx = 4294967295 - (top & 4294967295)
    out_off = (layer * M + rows[:, None]) * k + slots[None, :]
    out_mask = row_ok[:, None] & (slots[None, :] < k)
    tl.store(OUT_V + out_off, vals, mask=out_mask)
    tl.store(OUT_I + out_off, idx, mask=out_mask)


def knn_config(k: int, dtype: torch.dtype, precision: str = "tf32x3") -> dict:
    """Tile sizes per (dtype, float32 precision, k bucket). Chosen by compiling every
    specialisation the launcher produces (`static_cases`: aligned, unaligned and
    above-2^31 inputs) for sm_80 and sm_90 and keeping the largest tiles with zero
    spills. ptxas sits near its register budget in all of them, so the choice is
    empirical: float32 at 3xTF32 carries split operands, hence its smaller D chunk at
    k <= 32 and k > 64; single TF32 (but at K_PAD 64) and fp16/bf16 at K_PAD 16 and 128
    spilled on the i64-stride or unaligned specialisations at BLOCK_N 64, so they take 32
    columns; the "ieee" float32 dot, an FMA outer product, spilled with software
    pipelining below K_PAD 128, so there it also runs one stage."""
    k_pad = max(2, triton.next_power_of_2(k))
    fp32 = dtype == torch.float32
    if k_pad <= 16:
        bm, bn, bd = 64, 64, 16 if fp32 else 32
    elif k_pad <= 32:
        # fp32: the int64 row offsets cost registers, and BLOCK_D 32 spilled 12 bytes on sm_80
        bm, bn, bd = (64, 32, 16) if fp32 else (64, 64, 32)
    elif k_pad <= 64:
        bm, bn, bd = 32, 64, 32
    else:
        bm, bn, bd = 16, 64, 16 if fp32 else 32
    stages = 2
    if fp32 and precision == "tf32" and k_pad != 64:
        bn = 32
    elif fp32 and precision == "ieee" and k_pad != 128:
        bn, stages = 32, 1
    elif not fp32 and k_pad in (16, 128):
        bn = 32
    return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, K_PAD=k_pad, num_warps=8, num_stages=stages)




@on_input_device
def knn(queries: torch.Tensor, keys: torch.Tensor, k: int, *, self_shift: int = -1,
        precision: str = "tf32x3") -> tuple[torch.Tensor, torch.Tensor]:
    """Inner-product top-k (callers pass unit rows for cosine).

    queries [L, M, D], keys [L, N, D] -> (values fp32 [L, M, k], indices int64 [L, M, k]).
    With self_shift >= 0, key `row + self_shift` is excluded for query `row`.

    `precision` is tl.dot's input_precision for float32 inputs ("ieee", "tf32",
    "tf32x3"); fp16/bf16 inputs use their tensor-core path with fp32 accumulation.
    """
    if queries.dtype not in TRITON_DTYPES:
        raise TypeError(f"triton kNN supports {TRITON_DTYPES}, got {queries.dtype}; "
                        "use backend='torch' for float64")
    if k > MAX_K:
        raise ValueError(f"triton kNN supports k <= {MAX_K}, got k={k}; use backend='torch'")
    # rows may be strided (a layer of an [N, L, D] stack, a view into a larger buffer):
    # only the feature axis must be contiguous, so such views launch without a copy
    queries = queries if queries.stride(-1) == 1 else queries.contiguous()
    keys = keys.to(queries.dtype)
    keys = keys if keys.stride(-1) == 1 else keys.contiguous()
    L, M, D = queries.shape
    N = keys.shape[1]
    vals = torch.empty(L, M, k, device=queries.device, dtype=torch.float32)
    idx = torch.empty(L, M, k, device=queries.device, dtype=torch.int64)
    precision = precision if queries.dtype == torch.float32 else "ieee"
    cfg = knn_config(k, queries.dtype, precision)
    num_warps, num_stages = cfg.pop("num_warps"), cfg.pop("num_stages")
    grid = (triton.cdiv(M, cfg["BLOCK_M"]), L)
    _knn_kernel[grid](
        queries, keys, vals, idx,
        M, N, D, k, max(self_shift, 0),
        queries.stride(0), queries.stride(1), keys.stride(0), keys.stride(1),
        EXCLUDE=self_shift >= 0,
        PRECISION=precision,
        num_warps=num_warps, num_stages=num_stages, **cfg,
    )
    return vals, idx


def static_cases():
    """Calls of `knn` covering every choice it makes -- dtype, float32 precision, K_PAD
    bucket (k = 1 also makes k a constant), self-exclusion -- on small aligned rows, on
    unaligned row views, and on [2, 2^21 + 64, 1024] layers (above 2^31 elements, so the
    layer stride arrives as i64), for the compile check in `_static`."""
    from ._static import meta, unaligned_rows

    big = 2**21 + 64
    shapes = {"small": lambda dt: torch.zeros(2, 64, 64, dtype=dt),
              "unaligned": lambda dt: unaligned_rows(2, 48, 100, dtype=dt),
              "large": lambda dt: meta(2, big, 1024, dtype=dt)}
    cases = []
    for dtype in TRITON_DTYPES:
        for prec in ("tf32x3", "tf32", "ieee") if dtype == torch.float32 else ("tf32x3",):
            for k in (1, 3, 5, 10, 20, 50, 100):
                for size, shift in (("small", -1), ("unaligned", 0), ("large", 0)):
                    def case(dtype=dtype, prec=prec, k=k, size=size, shift=shift):
                        x = shapes[size](dtype)
                        knn(x, x, k, self_shift=shift, precision=prec)
                    cases.append((f"{str(dtype)[6:]},{prec},k={k},{size},shift={shift}", case))
    return cases
