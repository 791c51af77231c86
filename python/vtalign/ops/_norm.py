"""Unit rows that do not depend on the scale of their input.

Every cosine quantity in vtalign (kNN, overlap, CKA on unit rows, the contrastive
losses, the cosine soft-DTW cost) starts by normalising rows. `x / ||x||` computed
directly overflows once an entry passes sqrt(float max) (1.8e19 in float32: ||x||
becomes inf and the row becomes 0) and underflows for tiny rows (the norm is 0 and
the row stays 0), so the answer would change with the scale of the input. Here each
row is first multiplied by the power of two that brings its largest entry into
[0.5, 1): its norm then lies in [0.5, sqrt(D)], and a power of two scales exactly,
so duplicated rows stay bit-identical (ties stay ties) and D = 1 still gives ±1.
"""
from __future__ import annotations

import torch

_HALF = (torch.float16, torch.bfloat16)


def _pow2(n: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2**n exactly, built from the exponent bits (n within the normal range of dtype)."""
    if dtype == torch.float64:
        return ((n.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((n.to(torch.int32) + 127) << 23).view(torch.float32)


def unit_rows(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows of `x [..., D]` scaled to unit L2 norm along the last axis; zero rows stay zero.

    The result does not change with the scale of x (any finite scale, subnormal rows
    included) and is differentiable. fp16/bf16 inputs are normalised in float32.
    `dtype` is the dtype to compute in and return (default: x's, float32 for fp16/bf16
    computed then cast back to x's dtype).
    """
    out_dtype = dtype or x.dtype
    work = dtype or (torch.float32 if x.dtype in _HALF else x.dtype)
    if work in _HALF:
        work = torch.float32
    xw = x.to(work)
    if xw.numel() == 0:
        return xw.to(out_dtype)
    amax = xw.detach().abs().amax(dim=-1, keepdim=True)
    _, e = torch.frexp(amax)  # amax = m * 2^e with m in [0.5, 1); e = 0 for a zero row
    # 2^-e in two factors: for a subnormal row -e passes the largest normal exponent
    h = torch.div(-e, 2, rounding_mode="floor")
    xs = xw * _pow2(h, work) * _pow2(-e - h, work)
    norm = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    # true division, as F.normalize does: exact cases (D = 1, duplicated rows) stay exact
    return (xs / norm.clamp_min(torch.finfo(work).tiny)).to(out_dtype)
