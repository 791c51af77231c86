"""The C++ lane path (one pair per SIMD lane, full groups of 16 float / 8 double pairs)
and the fused forward+backward path (`vtalign.soft_dtw` on features) against the
float64 reference: ragged lengths, bands, per-pair γ, a remainder that goes pair by
pair, every GEMM cost, normalize, and both entry points (features and a cost tensor)."""
import importlib
import warnings

import pytest
import torch

import vtalign
from vtalign.ops._common import cpp, has_cpp

pytestmark = pytest.mark.skipif(not has_cpp(), reason="needs the C++ extension")
fused = importlib.import_module("vtalign.ops.soft_dtw.cpp_fused")
ops = importlib.import_module("vtalign.ops.soft_dtw")
# Builds without AVX-512 have no lane kernels: every pair goes pair by pair, and the
# tests below then check that path on the same cases, except those about lanes as such.
needs_lanes = pytest.mark.skipif(has_cpp() and fused.lane_width(torch.float32) == 0,
                                 reason="this build has no lane kernels (no AVX-512)")

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}


def _case(gen, dtype, B, N, M, band):
    x = torch.randn(B, N, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(B, M, 3, generator=gen, dtype=torch.float64)
    xl = torch.randint(2, N + 1, (B,), generator=gen)
    yl = torch.randint(2, M + 1, (B,), generator=gen)
    g = torch.rand(B, generator=gen, dtype=torch.float64) + 0.2
    w = None
    if band is not None:
        w = max(band, max(ops.min_bandwidth(int(a), int(b)) for a, b in zip(xl, yl)))
    return x.to(dtype), y.to(dtype), xl, yl, g.to(dtype), w


def _grads(x, y, g, xl, yl, w, backend, cost="sqeuclidean", normalize=False):
    xx, yy, gg = (t.detach().clone().requires_grad_(True) for t in (x, y, g))
    v = vtalign.soft_dtw(xx, yy, gg, cost=cost, x_lengths=xl, y_lengths=yl, bandwidth=w,
                         normalize=normalize, backend=backend)
    wts = torch.linspace(-1, 1, v.shape[0], dtype=v.dtype)
    (v * wts).sum().backward()
    return v.detach(), xx.grad, yy.grad, gg.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("band", [None, 1])
@pytest.mark.parametrize("B", [3, 8, 19, 35])  # pair path only, one group (f64), groups + remainder, several
def test_fused_features_match_reference(dtype, band, B, gen):
    x, y, xl, yl, g, w = _case(gen, dtype, B, 9, 7, band)
    got = _grads(x, y, g, xl, yl, w, "cpp")
    want = _grads(x.double(), y.double(), g.double(), xl, yl, w, "reference")
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a.double(), b, **TOL[dtype])
    # dV/dγ = (V − <E, C>)/γ cancels: float32 rounding of V, scaled by 1/γ
    atol = 1e-9 if dtype == torch.float64 else 2e-5 * float(want[0].abs().max() / g.double().min())
    torch.testing.assert_close(got[3].double(), want[3], rtol=TOL[dtype]["rtol"], atol=atol)


@pytest.mark.parametrize("cost", ["cosine", "negdot"])
@pytest.mark.parametrize("normalize", [False, True])
def test_fused_costs_and_normalize(cost, normalize, gen):
    x, y, xl, yl, g, w = _case(gen, torch.float64, 17, 6, 8, None)
    if normalize:  # the self terms need equal lengths per side only
        y = y[:, :6]
        yl = xl.clone()
    got = _grads(x, y, g, xl, yl, w, "cpp", cost=cost, normalize=normalize)
    want = _grads(x, y, g, xl, yl, w, "reference", cost=cost, normalize=normalize)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("band", [None, 2])
def test_lane_path_on_cost_tensor(dtype, band, gen):
    """soft_dtw_cost takes the custom-op path, whose C++ state is soft-min weights for lane groups."""
    B, N, M = 21, 10, 12
    C = torch.rand(B, N, M, generator=gen, dtype=torch.float64) * 3
    xl = torch.randint(1, N + 1, (B,), generator=gen)
    yl = torch.randint(1, M + 1, (B,), generator=gen)
    w = None
    if band is not None:
        w = max(band, max(ops.min_bandwidth(int(a), int(b)) for a, b in zip(xl, yl)))
    g = torch.rand(B, generator=gen, dtype=torch.float64) + 0.1
    out = []
    for be, dt in (("cpp", dtype), ("reference", torch.float64)):
        Cc = C.to(dt).requires_grad_(True)
        gc = g.to(dt).requires_grad_(True)
        v = vtalign.soft_dtw_cost(Cc, gc, x_lengths=xl, y_lengths=yl, bandwidth=w, backend=be)
        (v * torch.arange(B, dtype=dt)).sum().backward()
        out.append((v.detach().double(), Cc.grad.double(), gc.grad.double()))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_fused_small_gamma_long_is_finite(gen):
    """γ = 1e-3 and lengths 300 in float32 through the fused path: finite values and gradients."""
    x, y = (torch.randn(16, 300, 4, generator=gen) for _ in range(2))
    x.requires_grad_(True)
    v = vtalign.soft_dtw(x, y, 1e-3, backend="cpp")
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(x.grad).all()
    want = vtalign.soft_dtw(x.detach().double()[:2], y.double()[:2], 1e-3, backend="cpp")
    torch.testing.assert_close(v[:2].detach().double(), want, rtol=1e-4, atol=1e-3)


@needs_lanes
def test_fused_path_is_taken_and_deterministic(gen, monkeypatch):
    """The dispatch really goes through the fused op here, and two runs agree bit for bit."""
    calls = []
    real = fused.FeatureSoftDTW.apply
    monkeypatch.setattr(fused.FeatureSoftDTW, "apply", lambda *a: calls.append(1) or real(*a))
    x, y = torch.randn(16, 20, 5, generator=gen), torch.randn(16, 24, 5, generator=gen)
    a = vtalign.soft_dtw(x, y, 0.5, backend="cpp")
    b = vtalign.soft_dtw(x, y, 0.5, backend="cpp")
    assert calls and torch.equal(a, b)
    assert fused.lane_width(torch.float32) == 16 and fused.lane_width(torch.float64) == 8
    assert fused.fused_available(16, 20, 24, torch.float32)
    assert fused.fused_available(15, 20, 24, torch.float32)  # no full group: the pair path
    assert not fused.fused_available(16, 4096, 4096, torch.float32)  # slab over the limit
    team = cpp().soft_dtw_team_mode(1, 512, 512)  # true whenever there are 2+ threads
    assert fused.fused_available(1, 512, 512, torch.float32) == (not team)


def test_dispatch_mirrors_match_the_cpp_rules():
    """fused_available's Python mirrors (traceable by torch.compile) agree with C++."""
    for P, N, M in [(1, 512, 512), (1, 100, 100), (1, 128, 128), (1, 127, 129), (3, 300, 60), (64, 2048, 2048)]:
        assert fused.team_mode(P, N, M) == cpp().soft_dtw_team_mode(P, N, M), (P, N, M)
    for dt in (torch.float32, torch.float64):
        if not fused.lane_width(dt):  # no lane kernels in this build: no slab to size
            continue
        for N, M in [(1, 1), (20, 24), (256, 256), (2048, 1000)]:
            assert fused.slab_bytes(N, M, dt) == cpp().soft_dtw_fused_slab_bytes(N, M, dt == torch.float64)


@pytest.mark.parametrize("dtype,tiny", [(torch.float32, 2.0 ** -80), (torch.float64, 2.0 ** -600)])
def test_alignment_has_no_subnormal_mass(dtype, tiny, gen):
    """Mass below `tiny` is exactly 0 (it would make the gradient GEMM run on subnormals),
    and dropping it changes E by nothing measurable at this precision."""
    x = torch.randn(20, 40, 8, generator=gen, dtype=torch.float64) * 3
    y = torch.randn(20, 40, 8, generator=gen, dtype=torch.float64) * 3
    E = vtalign.soft_dtw_alignment(x.to(dtype), y.to(dtype), 0.05, backend="cpp")
    assert bool(((E == 0) | (E >= tiny)).all())
    assert bool((E == 0).any())  # the case really has negligible mass to drop
    want = vtalign.soft_dtw_alignment(x, y, 0.05, backend="reference")
    if dtype == torch.float64:
        torch.testing.assert_close(E, want, **TOL[dtype])
    else:  # γ = 0.05 on costs ~100 is ill-conditioned in float32: no worse than float32 torch
        E_torch = vtalign.soft_dtw_alignment(x.float(), y.float(), 0.05, backend="torch")
        assert (E.double() - want).abs().max() <= (E_torch.double() - want).abs().max() * 1.01


@needs_lanes
def test_fused_writes_alignment_over_its_cost_buffer(gen):
    """With gradients, the fused op returns E in the GEMM buffer it was given (no second
    [P, N, M] tensor); E there equals soft_dtw_alignment's, and an alias that is not the
    same contiguous layout is refused before the kernel runs."""
    x, y = torch.randn(17, 11, 4, generator=gen), torch.randn(17, 9, 4, generator=gen)
    D = torch.bmm(x, y.transpose(1, 2))
    xn, yn = (x * x).sum(-1), (y * y).sum(-1)
    g, xl, yl = torch.full((17,), 0.7), torch.full((17,), 11), torch.full((17,), 9)
    values, _, rows, _ = fused._fused_op(D, g, xl, yl, -1, True, False, -2.0, 0.0, True, xn, yn)
    E = vtalign.soft_dtw_alignment(x, y, 0.7, backend="reference")
    torch.testing.assert_close(D.double(), E.double(), rtol=2e-4, atol=2e-5)
    torch.testing.assert_close(rows, D.sum(-1))
    torch.testing.assert_close(values.double(), vtalign.soft_dtw(x.double(), y.double(), 0.7), rtol=1e-5,
                               atol=1e-4)
    buf = torch.randn(18, 11, 9, generator=gen)  # E one pair ahead of C: overlapping, not the same
    out = [torch.empty(17), torch.empty(17, dtype=torch.float64), torch.empty(17, 11), torch.empty(17, 9)]
    with pytest.raises(ValueError, match="alias"):
        fused.cpp().soft_dtw_fused(buf[:17][None].numpy(), g.numpy(), xl.numpy(), yl.numpy(), -1, True, False,
                                   -2.0, 0.0, True, xn.numpy(), yn.numpy(), out[0].numpy(), buf[1:].numpy(),
                                   *(t.numpy() for t in out[1:]))


@pytest.mark.parametrize("path", [pytest.param("lanes", marks=needs_lanes), "pairs", "team"])
@pytest.mark.parametrize("case", ["exp_domain", "log_domain", "falls_back_mid_sweep"])
def test_forward_exp_domain_and_its_fallback(path, case, gen):
    """The forwards run in the exp domain (mantissa + exponent per cell) while
    |log2 e^{-C/γ}|·(n + m + 2) < 2^23 in float32 (2^23/82 ≈ 1e5 per cell at 40 x 40);
    costs beyond that send the sweep back to the log domain, also from a later row. Lane
    groups (AVX-512), pairs one per thread, and one pair shared by the threads: all three
    cases must agree with the float64 reference, values and gradients."""
    B, N, M = {"lanes": (16, 40, 40), "pairs": (3, 40, 40), "team": (1, 130, 130)}[path]
    C = torch.rand(B, N, M, generator=gen, dtype=torch.float64) * 100
    gamma = {"exp_domain": 1.0, "log_domain": 1e-3, "falls_back_mid_sweep": 0.5}[case]
    if case == "falls_back_mid_sweep":  # rows 31.. need |log2 K| up to 2.9e5
        C[:, 30:] *= 1e3
    out = []
    for be, dt in (("cpp", torch.float32), ("reference", torch.float64)):
        Cc = C.to(dt).requires_grad_(True)
        v = vtalign.soft_dtw_cost(Cc, gamma, backend=be)
        (v * torch.linspace(-1, 1, B, dtype=dt)).sum().backward()
        out.append((v.detach().double(), Cc.grad.double()))
    (v, g), (v_ref, g_ref) = out
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=1e-6 * float(v_ref.abs().max()))
    torch.testing.assert_close(g, g_ref, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_rows", [True, False])
def test_feature_passes_match_torch(dtype, with_rows, gen):
    # The two C++ passes of the fused feature path (sq_norms; the gradient's combine step).
    x = torch.randn(5, 7, 33, generator=gen, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(fused.sq_norms(x), (x.double() ** 2).sum(-1).to(dtype))
    G = torch.randn(5, 7, 33, generator=gen, dtype=dtype)
    a, b = torch.randn(5, dtype=dtype, generator=gen), torch.randn(5, dtype=dtype, generator=gen)
    rows = torch.rand(5, 7, dtype=dtype, generator=gen)
    want = a[:, None, None] * G + (b[:, None, None] * rows[:, :, None] * x if with_rows else 0)
    got = fused._combine(G.clone(), a, b, rows if with_rows else None, x)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("band", [None, 3])
def test_pair_path_tiles_match_reference(dtype, band, gen):
    """The pair path moves costs into, and E out of, its skewed layout 32 x 32 tiles at a
    time: sizes over several tiles, ragged and banded, fused (features) and through the
    custom op (a cost tensor), with one pair shared by the threads (team mode)."""
    x, y, xl, yl, g, w = _case(gen, dtype, 3, 75, 41, band)
    got = _grads(x, y, g, xl, yl, w, "cpp")
    want = _grads(x.double(), y.double(), g.double(), xl, yl, w, "reference")
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a.double(), b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_team_mode_matches_reference(dtype, gen):
    """One long pair through the custom op: with 2+ threads they share its diagonals and
    its skewed tiles (team mode); values and E against the reference."""
    C = torch.rand(1, 150, 130, generator=gen, dtype=torch.float64)
    for bw in (None, 20):
        kw = dict(bandwidth=bw, x_lengths=[141], y_lengths=[127])
        v = vtalign.soft_dtw_cost(C.to(dtype), 0.3, backend="cpp", **kw)
        E = vtalign.soft_dtw_alignment_cost(C.to(dtype), 0.3, backend="cpp", **kw)
        torch.testing.assert_close(v.double(), vtalign.soft_dtw_cost(C, 0.3, backend="reference", **kw), **TOL[dtype])
        torch.testing.assert_close(E.double(), vtalign.soft_dtw_alignment_cost(C, 0.3, backend="reference", **kw),
                                   **TOL[dtype])


def test_fused_op_schema_and_compile(gen):
    """Eager calls skip the custom-op dispatch; the op itself must still pass opcheck
    (schema, fake shapes, the mutation of D) and torch.compile must trace through it."""
    x, y = torch.randn(16, 12, 5, generator=gen), torch.randn(16, 10, 5, generator=gen)
    D = torch.bmm(x, y.transpose(1, 2))
    L1, L2 = torch.full((16,), 12), torch.full((16,), 10)
    args = (D, torch.ones(16), L1, L2, -1, True, True, -2.0, 0.0, True, fused.sq_norms(x), fused.sq_norms(y))
    torch.library.opcheck(fused._fused_op, args)

    def loss(a, b):
        return vtalign.soft_dtw(a, b, 0.5, backend="cpp").sum()

    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss(xe, y).backward()
    compiled = torch.compile(loss, backend="aot_eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.testing.assert_close(compiled(xc, y), loss(x, y))
        compiled(xc, y).backward()
    torch.testing.assert_close(xc.grad, xe.grad)
    # the dispatch is traced, not a pybind call Dynamo warns about
    assert not [w for w in caught if "does not know how to trace" in str(w.message)]


def test_fused_forwards_before_one_backward(gen):
    """The GEMM buffer is per-thread scratch reused by the next call: two forwards before
    one backward (and a backward run twice with retain_graph) keep their own gradients."""
    xs = [torch.randn(16, 9, 4, generator=gen, requires_grad=True) for _ in range(2)]
    ys = [torch.randn(16, 7, 4, generator=gen) for _ in range(2)]
    v0, v1 = (vtalign.soft_dtw(x, y, 0.7, backend="cpp") for x, y in zip(xs, ys))
    (v0.sum() + 3 * v1.sum()).backward(retain_graph=True)
    first = [x.grad.clone() for x in xs]
    (v0.sum() + 3 * v1.sum()).backward()
    for k, (x, y) in enumerate(zip(xs, ys)):
        xr = x.detach().double().requires_grad_()
        ((1 + 2 * k) * vtalign.soft_dtw(xr, y.double(), 0.7, backend="reference").sum()).backward()
        torch.testing.assert_close(first[k].double(), xr.grad, **TOL[torch.float32])
        torch.testing.assert_close(x.grad, 2 * first[k])
