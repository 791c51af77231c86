"""Property tests (hypothesis over shapes, γ, bands, lengths), long sequences on the
CPU, numerics at small γ, the team (diagonal-parallel) C++ path, and opcheck."""
import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vtalign
from vtalign.ops._common import has_cpp
from vtalign.reference import soft_dtw as ref

from .test_soft_dtw import EXACT

ops = importlib.import_module("vtalign.ops.soft_dtw")


@st.composite
def problems(draw):
    B = draw(st.one_of(st.integers(1, 3), st.integers(8, 19)))  # >= 8: C++ lane groups (+ remainder)
    N = draw(st.integers(1, 7))
    M = draw(st.integers(1, 7))
    xl = [draw(st.integers(1, N)) for _ in range(B)]
    yl = [draw(st.integers(1, M)) for _ in range(B)]
    gamma = draw(st.sampled_from([0.01, 0.1, 0.5, 1.0, 5.0]))
    if draw(st.booleans()):
        need = max(ops.min_bandwidth(n, m) for n, m in zip(xl, yl))
        band = need + draw(st.integers(0, 3))
    else:
        band = None
    seed = draw(st.integers(0, 2**16))
    return B, N, M, xl, yl, gamma, band, seed


@given(problems())
def test_property_values_and_alignment(problem):
    B, N, M, xl, yl, gamma, band, seed = problem
    C = torch.rand(B, N, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    rv = ref.soft_dtw_cost(C, gamma, bandwidth=band, x_lengths=xl, y_lengths=yl)
    rE = ref.soft_dtw_alignment(C, gamma, bandwidth=band, x_lengths=xl, y_lengths=yl)
    for be in EXACT:
        v = vtalign.soft_dtw_cost(C, gamma, bandwidth=band, x_lengths=xl, y_lengths=yl, backend=be)
        E = vtalign.soft_dtw_alignment_cost(C, gamma, bandwidth=band, x_lengths=xl, y_lengths=yl, backend=be)
        torch.testing.assert_close(v, rv, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(E, rE, rtol=1e-8, atol=1e-9)
        # E is a distribution over alignments: every cell in [0, 1], end cell 1
        assert (E >= 0).all() and (E <= 1 + 1e-9).all()
        for b in range(B):
            assert E[b, xl[b] - 1, yl[b] - 1].item() == pytest.approx(1.0)


@given(st.integers(1, 9), st.integers(1, 9))
def test_property_min_bandwidth_is_tight(n, m):
    w = ops.min_bandwidth(n, m)
    assert ref.reachable(n, m, w)
    assert w == 0 or not ref.reachable(n, m, w - 1)


@given(st.integers(2, 6), st.integers(2, 6), st.sampled_from([0.05, 1.0]), st.integers(0, 2**16))
def test_property_soft_dtw_is_below_dtw(n, m, gamma, seed):
    """softmin <= min, so soft-DTW <= DTW, and it tends to DTW as γ -> 0."""
    C = torch.rand(1, n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    D = torch.full((n + 1, m + 1), float("inf"), dtype=torch.float64)
    D[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[i, j] = C[0, i - 1, j - 1] + min(D[i - 1, j - 1], D[i - 1, j], D[i, j - 1])
    v = vtalign.soft_dtw_cost(C, gamma).item()
    assert v <= D[n, m].item() + 1e-12
    assert v >= D[n, m].item() - gamma * (n + m) * 1.1 - 1e-12  # each step loses at most γ·log 3


@pytest.mark.skipif(not has_cpp(), reason="the C++ core is not built")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_length_3000_on_cpu(dtype, gen):
    """Lengths far past the 1024 cap: finite values and gradients (C++ backend). Two pairs
    (one per thread); the diagonal-split path is covered by the team test below."""
    x = (torch.randn(2, 3000, 8, generator=gen, dtype=torch.float64) / 8 ** 0.5).to(dtype).requires_grad_()
    y = (torch.randn(2, 2900, 8, generator=gen, dtype=torch.float64) / 8 ** 0.5).to(dtype)
    v = vtalign.soft_dtw(x, y, 0.1, cost="cosine", x_lengths=[3000, 2500], backend="cpp")
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(x.grad).all()
    assert x.grad[0].abs().sum() > 0 and (x.grad[1, 2500:] == 0).all()


@pytest.mark.skipif(not has_cpp(), reason="the C++ core is not built")
def test_long_float32_matches_float64_and_band(gen):
    x = torch.randn(2, 1500, 4, generator=gen, dtype=torch.float64) / 2
    y = torch.randn(2, 1200, 4, generator=gen, dtype=torch.float64) / 2
    v64 = vtalign.soft_dtw(x, y, 1.0, cost="cosine", backend="cpp")
    v32 = vtalign.soft_dtw(x.float(), y.float(), 1.0, cost="cosine", backend="cpp")
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-3)
    vb = vtalign.soft_dtw(x, y, 1.0, cost="cosine", bandwidth=ops.min_bandwidth(1500, 1200) + 5, backend="cpp")
    assert torch.isfinite(vb).all() and (vb >= v64).all()  # a band removes paths: value goes up


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("gamma", [1e-3, 1e-2])
def test_small_gamma_is_finite_and_exact(backend, gamma, gen):
    """Small γ on well-scaled inputs: no NaN/inf, values and gradients match the oracle."""
    x = torch.randn(2, 40, 6, generator=gen, dtype=torch.float64).requires_grad_()
    y = torch.randn(2, 33, 6, generator=gen, dtype=torch.float64)
    v = vtalign.soft_dtw(x, y, gamma, cost="cosine", bandwidth=8, x_lengths=[40, 25], backend=backend)
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(x.grad).all()
    E = vtalign.soft_dtw_alignment(x.detach(), y, gamma, cost="cosine", bandwidth=8, x_lengths=[40, 25],
                                   backend=backend)
    rE = ref.soft_dtw_alignment(ref.pairwise_cost(x.detach(), y, "cosine"), gamma, bandwidth=8,
                                x_lengths=[40, 25])
    torch.testing.assert_close(E, rE, rtol=1e-6, atol=1e-8)


@pytest.mark.skipif(not has_cpp(), reason="the C++ core is not built")
@pytest.mark.parametrize("band", [None, 150])
def test_cpp_team_path_equals_batch_path(band, gen):
    """B < threads and long sequences split each diagonal across threads; the result must
    equal the per-pair (batch-parallel) path exactly."""
    C = torch.rand(1, 300, 280, generator=gen, dtype=torch.float64)
    C.requires_grad_()
    v1 = vtalign.soft_dtw_cost(C, 0.5, bandwidth=band, backend="cpp")
    (g1,) = torch.autograd.grad(v1.sum(), C)
    C4 = C.detach().expand(4, -1, -1).clone().requires_grad_()
    v4 = vtalign.soft_dtw_cost(C4, 0.5, bandwidth=band, backend="cpp")
    (g4,) = torch.autograd.grad(v4.sum(), C4)
    assert torch.equal(v1, v4[:1]) and torch.equal(g1[0], g4[3])


@pytest.mark.parametrize("backend", EXACT)
def test_opcheck(backend, gen):
    fwd = torch.ops.vtalign.soft_dtw_fwd.default
    bwd = torch.ops.vtalign.soft_dtw_bwd.default
    C = torch.rand(1, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    xl, yl = torch.tensor([4, 3]), torch.tensor([5, 2])
    torch.library.opcheck(fwd, (C, g, xl, yl, -1, backend))
    torch.library.opcheck(fwd, (C, g, xl, yl, 2, backend))
    _, R = fwd(C.detach(), g.detach(), xl, yl, -1, backend)
    grad = torch.tensor([1.0, -0.5], dtype=torch.float64)
    for need_ec in (True, False):
        torch.library.opcheck(bwd, (C.detach(), R, g.detach(), xl, yl, -1, grad, backend, need_ec))


def test_inner_product_in_chunks_equals_whole(gen):
    from vtalign.ops.soft_dtw.custom_ops import inner_f64

    E, C = torch.rand(7, 5, 6, generator=gen), torch.rand(7, 5, 6, generator=gen)
    whole = (E.double() * C.double()).sum((1, 2))
    assert torch.equal(inner_f64(E, C, budget=16 * 5 * 6 * 2), whole)  # two pairs a chunk
    assert torch.equal(inner_f64(E, C), whole)


def test_gamma_gradient_only_when_asked(gen, monkeypatch):
    from vtalign.ops.soft_dtw import custom_ops

    calls = []
    real = custom_ops.inner_f64
    monkeypatch.setattr(custom_ops, "inner_f64", lambda E, C, **kw: calls.append(1) or real(E, C, **kw))
    C = torch.rand(2, 4, 5, generator=gen, requires_grad=True)
    vtalign.soft_dtw_cost(C, 0.5, backend="torch").sum().backward()
    assert calls == []  # γ is a float: no ⟨E, C⟩, no float64 copies
    g = torch.tensor(0.5, requires_grad=True)
    vtalign.soft_dtw_cost(C, g, backend="torch").sum().backward()
    assert calls == [1] and g.grad is not None
