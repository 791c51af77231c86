"""Triton neighbour overlap over all (la, lb) layer pairs in one launch.

Grid: one axis of La·Lb·(row blocks) programs (the second and third grid axes stop
at 65,535, which La·Lb or N/BLOCK can pass). Each program holds a block of A's lists in
registers and streams B's k columns against them. Counts are integers, so the
mean path reduces with integer atomics: exact and run-to-run deterministic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import on_input_device


@triton.jit
def _overlap_kernel(A, B, OUT, N, k, Lb,
                    BLOCK: tl.constexpr, K_PAD: tl.constexpr, REDUCE: tl.constexpr):
    nblk = tl.cdiv(N, BLOCK)
    pair = tl.program_id(0) // nblk
    pid = tl.program_id(0) % nblk
    la = (pair // Lb).to(tl.int64)
    lb = (pair % Lb).to(tl.int64)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    ok = rows < N
    slots = tl.arange(0, K_PAD)
    a = tl.load(A + (la * N + rows[:, None]) * k + slots[None, :],
                mask=ok[:, None] & (slots[None, :] < k), other=-1)
    cnt = tl.zeros([BLOCK], dtype=tl.int32)
    for j in range(0, k):
        bj = tl.load(B + (lb * N + rows) * k + j, mask=ok, other=-2)
        cnt += tl.sum((a == bj[:, None]).to(tl.int32), 1)
    if REDUCE:
        tl.atomic_add(OUT + pair, tl.sum(cnt.to(tl.int64), 0))
    else:
        tl.store(OUT + pair.to(tl.int64) * N + rows, cnt, mask=ok)


def overlap_config(k: int) -> dict:
    k_pad = max(2, triton.next_power_of_2(k))
    return dict(BLOCK=max(16, min(128, 2048 // k_pad)), K_PAD=k_pad, num_warps=4)


@on_input_device
def overlap_counts(idx_a: torch.Tensor, idx_b: torch.Tensor, *, reduce: bool) -> torch.Tensor:
    """[La, N, k] x [Lb, N, k] int64 -> [La, Lb] int64 totals or [La, Lb, N] int32 counts."""
    idx_a = idx_a.to(torch.int64).contiguous()
    idx_b = idx_b.to(torch.int64).contiguous()
    La, N, k = idx_a.shape
    Lb = idx_b.shape[0]
    if reduce:
        out = torch.zeros(La, Lb, dtype=torch.int64, device=idx_a.device)
    else:
        out = torch.empty(La, Lb, N, dtype=torch.int32, device=idx_a.device)
    cfg = overlap_config(k)
    num_warps = cfg.pop("num_warps")
    grid = (triton.cdiv(N, cfg["BLOCK"]) * La * Lb,)
    _overlap_kernel[grid](idx_a, idx_b, out, N, k, Lb, REDUCE=reduce, num_warps=num_warps, **cfg)
    return out


def static_cases():
    """Calls of `overlap_counts` for every K_PAD bucket (k = 1 also makes k a constant),
    both reductions, one layer of B at k = 10 (Lb = 1 becomes a constant), and 13 x 13 layers of
    2^21 + 7 rows each (an int64 list above 2^31 elements), for the compile check."""
    from ._static import meta

    cases = []
    for k in (1, 3, 5, 10, 20, 50, 100):
        for reduce in (True, False):
            for size in ("small", "large") + (("one layer",) if k == 10 else ()):
                def case(k=k, reduce=reduce, size=size):
                    if size == "large":
                        a = meta(13, 2**21 + 7, k, dtype=torch.int64)
                        b = a
                    else:
                        a = torch.zeros(3, 40, k, dtype=torch.int64)
                        b = a[:1] if size == "one layer" else a
                    overlap_counts(a, b, reduce=reduce)
                cases.append((f"k={k},reduce={reduce},{size}", case))
    return cases
