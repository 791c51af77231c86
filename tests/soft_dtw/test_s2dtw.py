"""S2DTW (VT-TWINS, docs/design.md §3.4 steps 1–3): every backend equals ordinary soft-DTW
on the explicitly built (2n+1) x (2m+1) weak-alignment matrix."""
import importlib
import math

import pytest
import torch

import vtalign
from tests._device import device_for
from vtalign.nn import S2DTW
from vtalign.reference import soft_dtw as ref

from .test_soft_dtw import BACKENDS, EXACT, tol

ops = importlib.import_module("vtalign.ops.soft_dtw")


def explicit_matrix(C: torch.Tensor, gs: float, tau: float) -> torch.Tensor:
    """Steps 1–2 for one pair, written out cell by cell from the definition."""
    n, m = C.shape
    Cs = torch.empty(n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                nb = [0.0, 0.0, 0.0]
            else:
                nb = [float(C[i, j - 1]) if j > 0 else math.inf,
                      float(C[i - 1, j]) if i > 0 else math.inf,
                      float(C[i - 1, j - 1]) if i > 0 and j > 0 else math.inf]
            lo = min(nb)
            Cs[i, j] = float(C[i, j]) + lo - gs * math.log(sum(math.exp(-(v - lo) / gs) for v in nb))
    W = torch.full((2 * n + 1, 2 * m + 1), tau, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            W[2 * i + 1, 2 * j + 1] = Cs[i, j]
    return W


def _as(t: torch.Tensor, backend: str) -> torch.Tensor:
    """The Triton DP computes in float32 and refuses float64: it gets the float32 copy, on
    the GPU when there is one."""
    return t.float().to(device_for(backend)) if backend == "triton" else t


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cost", ["negdot", "cosine"])
def test_s2dtw_is_soft_dtw_on_the_weak_alignment_matrix(backend, cost, gen):
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) * 0.5
    y = torch.randn(3, 6, 5, generator=gen, dtype=torch.float64) * 0.5
    xl, yl = [4, 2, 3], [6, 5, 1]
    v = vtalign.s2dtw(_as(x, backend), _as(y, backend), gamma=0.1, smoothing_gamma=0.2, null_cost=0.5, cost=cost,
                      x_lengths=xl, y_lengths=yl, backend=backend).cpu()
    for b in range(3):
        C = ref.pairwise_cost(x[b:b + 1, :xl[b]], y[b:b + 1, :yl[b]], cost)[0]
        W = explicit_matrix(C, 0.2, 0.5)
        torch.testing.assert_close(v[b:b + 1].double(), ref.soft_dtw_cost(W[None], 0.1), **tol(backend))


def test_matrix_builders_agree(gen):
    C = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    W = ops.s2dtw_matrix(C, 0.1, 0.7)
    Wr = ref.s2dtw_matrix(C, 0.1, 0.7)
    torch.testing.assert_close(W, Wr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(W[1], explicit_matrix(C[1], 0.1, 0.7), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_s2dtw_pairwise_equals_loop(backend, gen):
    x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    P = vtalign.s2dtw_pairwise(_as(x, backend), _as(y, backend), gamma=0.2, y_lengths=[4, 2, 3],
                               backend=backend).cpu()
    S = S2DTW(gamma=0.2, backend=backend)
    for a in range(2):
        for b in range(3):
            r = ref.s2dtw(x[a:a + 1], y[b:b + 1, :[4, 2, 3][b]], gamma=0.2)
            torch.testing.assert_close(P[a, b:b + 1].double(), r, **tol(backend))
    xs, ys = _as(x, backend), _as(y[:2], backend)
    torch.testing.assert_close(S(xs, ys), vtalign.s2dtw(xs, ys, gamma=0.2, backend=backend))


@pytest.mark.parametrize("backend", EXACT)
def test_s2dtw_gradients(backend, gen):
    x = (torch.randn(2, 3, 4, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    y = (torch.randn(2, 4, 4, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: vtalign.s2dtw(a, b, gamma=0.3, backend=backend), (x, y),
                                    fast_mode=True)
    v = vtalign.s2dtw_pairwise(x, y, gamma=0.3, backend=backend)
    v.sum().backward()
    xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    ref.s2dtw_pairwise(xr, yr, gamma=0.3).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(y.grad, yr.grad, rtol=1e-8, atol=1e-9)
