"""Accuracy of vtalign.soft_dtw (C++ backend, fused path) against the float64 reference.

    python tools/soft_dtw_accuracy.py [B] [backend]
    TRITON_INTERPRET=1 python tools/soft_dtw_accuracy.py 4 triton   # no GPU here

B = 16 pairs by default (one float32 lane group, two float64 ones; B < 16 float32
pairs take the pair-by-pair path instead), N = 40, M = 33, D = 8,
squared Euclidean cost; prints the largest relative error of the values and the
largest gradient error relative to the largest gradient, per dtype and γ.
backend: "cpp" (default), or "triton" (float32 only; CUDA, or the interpreter).
"""
from __future__ import annotations

import sys

import torch

import vtalign


def main(B: int = 16, backend: str = "cpp") -> None:
    gen = torch.Generator().manual_seed(1)
    N, M, D = 40, 33, 8
    x = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    y = torch.randn(B, M, D, generator=gen, dtype=torch.float64)
    for dtype in (torch.float32,) if backend == "triton" else (torch.float32, torch.float64):
        for gamma in (1.0, 0.1, 0.01):
            xr = x.clone().requires_grad_(True)
            want = vtalign.soft_dtw(xr, y, gamma=gamma, backend="reference")
            g_want = torch.autograd.grad(want.sum(), xr)[0]
            xs = x.to(dtype).clone().requires_grad_(True)
            got = vtalign.soft_dtw(xs, y.to(dtype), gamma=gamma, backend=backend)
            got.sum().backward()
            val = ((got.double() - want).abs() / want.abs()).max().item()
            grad = ((xs.grad.double() - g_want).abs().max() / g_want.abs().max()).item()
            print(f"{str(dtype):14s} gamma={gamma:<5} value rel err {val:.2e}  gradient rel err {grad:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16, sys.argv[2] if len(sys.argv) > 2 else "cpp")
