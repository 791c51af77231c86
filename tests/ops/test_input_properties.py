"""Properties every public op keeps for any input it accepts (docs/reliability.md, "Ops"):

- a cosine quantity does not change with the scale of its input (x 1e-30 ... x 1e30);
- finite inputs give finite outputs, or a refusal that says why;
- permuting the samples permutes the answer (kNN, overlap, losses);
- ties go to the lower index on every backend, the float64 reference included;
- every argument's type and range is checked, naming the argument, before any kernel.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vtalign
from tests._device import device_for
from vtalign.ops._common import has_cpp, unit_rows
from vtalign.probe.metrics import chance_level

BACKENDS = (["cpp"] if has_cpp() else []) + ["torch", "reference", "triton"]
SCALES = st.sampled_from([1e-30, 1e-20, 1e-6, 1.0, 1e6, 1e20, 1e30])


def _feats(seed: int, n: int, d: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), scale=SCALES, d=st.integers(1, 9))
def test_unit_rows_ignore_scale(seed, scale, d):
    x = _feats(seed, 6, d)
    want = torch.nn.functional.normalize(x.double(), dim=-1)
    for dt in (torch.float32, torch.float64):
        got = unit_rows(x.to(dt) * scale)
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6 if dt == torch.float32 else 1e-14)
    assert torch.equal(unit_rows(torch.zeros(2, d)), torch.zeros(2, d))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6)
@given(seed=st.integers(0, 2**31 - 1), scale=SCALES)
def test_knn_neighbours_ignore_scale(backend, seed, scale):
    x = _feats(seed, 40, 6).to(device_for(backend))
    v1, i1 = vtalign.cosine_knn(x, 4, backend=backend)
    v2, i2 = vtalign.cosine_knn(x * scale, 4, backend=backend)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-6)
    assert torch.isfinite(v2).all()


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), sa=SCALES, sb=SCALES)
def test_mutual_knn_ignores_scale(seed, sa, sb):
    a, b = _feats(seed, 60, 5), _feats(seed + 1, 60, 7)
    assert vtalign.mutual_knn(a * sa, b * sb, k=5) == vtalign.mutual_knn(a, b, k=5)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6)
@given(seed=st.integers(0, 2**31 - 1))
def test_knn_is_permutation_equivariant(backend, seed):
    x = _feats(seed, 30, 5)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(seed))
    dev = device_for(backend)
    v, i = vtalign.cosine_knn(x.to(dev), 3, backend=backend)
    vp, ip = vtalign.cosine_knn(x[perm].to(dev), 3, backend=backend)
    # row r of the permuted search is row perm[r] of the original, its neighbours renamed
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(30)
    torch.testing.assert_close(vp.cpu(), v.cpu()[perm], rtol=0, atol=1e-6)
    gaps = (v[:, :-1] - v[:, 1:]).abs().cpu().min(1).values > 1e-5  # rows without near-ties
    assert torch.equal(ip.cpu()[gaps], inv[i.cpu()[perm]][gaps])


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_rows_tie_to_the_lower_index(backend):
    x = _feats(7, 30, 16)
    x[17] = x[26] = x[5]
    x[11] = 2.5 * x[3]  # cosine-identical to row 3 at another scale
    _, idx = vtalign.cosine_knn(x.to(device_for(backend)), 2, backend=backend)
    idx = idx.cpu()
    assert idx[5].tolist() == [17, 26] and idx[26].tolist() == [5, 17] and idx[3, 0] == 11


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlap_is_permutation_equivariant(backend):
    g = torch.Generator().manual_seed(3)
    a = torch.stack([torch.randperm(20, generator=g)[:4] for _ in range(20)])[None]
    b = torch.stack([torch.randperm(20, generator=g)[:4] for _ in range(20)])[None]
    perm = torch.randperm(20, generator=g)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(20)
    dev = device_for(backend)
    per = vtalign.knn_overlap(a.to(dev), b.to(dev), reduce="none", backend=backend).cpu()
    pa, pb = inv[a[:, perm]], inv[b[:, perm]]  # the same lists over renamed samples
    perp = vtalign.knn_overlap(pa.to(dev), pb.to(dev), reduce="none", backend=backend).cpu()
    assert torch.equal(perp[..., :], per[..., perm])


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), scale=SCALES)
def test_contrastive_loss_ignores_scale_when_normalising(seed, scale):
    a, b = _feats(seed, 12, 8), _feats(seed + 1, 12, 8)
    want = vtalign.contrastive_loss(a, b, 10.0)
    got = vtalign.contrastive_loss(a * scale, b * scale, 10.0)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", [1.0, 8.0, 60.0])
def test_contrastive_loss_without_normalising_matches_reference(norm):
    """Raw embeddings (normalize=False) whose logits spread far past what a unit-row
    shortcut assumes: the loss is finite and equals the float64 definition."""
    from vtalign.reference import contrastive as ref

    a, b = _feats(0, 8, 64), _feats(1, 8, 64)
    a, b = a / a.norm(dim=1, keepdim=True) * norm, b / b.norm(dim=1, keepdim=True) * norm
    for backend in BACKENDS[:-1]:
        got = vtalign.contrastive_loss(a, b, 1.0, normalize=False, backend=backend)
        want = ref.contrastive_loss(a.double(), b.double(), 1.0, normalize=False)
        assert torch.isfinite(got), backend
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def test_lse_pool_temperature_is_finite_or_refused():
    g = torch.Generator().manual_seed(0)
    ta = torch.randn(4, 3, 8, generator=g, requires_grad=True)
    vb = torch.randn(4, 3, 8, generator=g)
    valid = torch.ones(4, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="pool_temperature must be >= 1e-30 for pool='lse'"):
        vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool="lse", pool_temperature=1e-40)
    loss = vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool="lse", pool_temperature=1e-30)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(ta.grad).all()
    # τ -> 0 turns the log-sum-exp pool into the max pool
    torch.testing.assert_close(loss, vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool="max"), rtol=1e-5,
                               atol=1e-5)


def test_contrastive_loss_is_permutation_invariant():
    a, b = _feats(1, 16, 8), _feats(2, 16, 8)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(vtalign.contrastive_loss(a[perm], b[perm], 10.0),
                               vtalign.contrastive_loss(a, b, 10.0), rtol=1e-6, atol=1e-6)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), scale=SCALES)
def test_soft_dtw_cosine_ignores_scale(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 6, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    torch.testing.assert_close(vtalign.soft_dtw(x * scale, y, cost="cosine"), vtalign.soft_dtw(x, y, cost="cosine"),
                               rtol=1e-5, atol=1e-5)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e8, 1e19, 1e30]))
def test_soft_dtw_finite_or_refused(seed, scale):
    """Finite features give a finite soft-DTW, or a refusal naming float32's range."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 6, 4, generator=g) * scale, torch.randn(2, 5, 4, generator=g)
    try:
        v = vtalign.soft_dtw(x, y)
    except ValueError as e:
        assert "too large for soft-DTW in torch.float32" in str(e) and scale >= 1e19
        return
    assert torch.isfinite(v).all()


def _seq(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# every other public op with a cosine form, at a scale far from 1 against scale 1
COSINE_OPS = {
    "knn": lambda s: vtalign.knn(_feats(1, 9, 5) * s, _feats(2, 30, 5), 3),
    "slot_contrastive_loss": lambda s: vtalign.slot_contrastive_loss(
        _seq(3, 6, 4, 8) * s, _seq(4, 6, 4, 8), torch.ones(6, 4, dtype=torch.bool), 10.0, pool="lse"),
    "soft_dtw_pairwise": lambda s: vtalign.soft_dtw_pairwise(_seq(5, 3, 6, 4) * s, _seq(6, 2, 5, 4), cost="cosine"),
    "soft_dtw_alignment": lambda s: vtalign.soft_dtw_alignment(_seq(7, 2, 6, 4) * s, _seq(8, 2, 5, 4), cost="cosine"),
    "s2dtw": lambda s: vtalign.s2dtw(_seq(9, 2, 6, 4) * s, _seq(10, 2, 5, 4), cost="cosine"),
    "s2dtw_pairwise": lambda s: vtalign.s2dtw_pairwise(_seq(11, 2, 6, 4) * s, _seq(12, 3, 5, 4), cost="cosine"),
}


@pytest.mark.parametrize("name", sorted(COSINE_OPS))
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_every_cosine_op_ignores_scale(name, scale):
    got, want = COSINE_OPS[name](scale), COSINE_OPS[name](1.0)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert torch.isfinite(g.double()).all()
        if g.dtype == torch.int64:
            assert torch.equal(g, w)
        else:
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


X = torch.randn(20, 4)
IDX = torch.stack([torch.randperm(20)[:3] for _ in range(20)])


@pytest.mark.parametrize("call,err,match", [
    (lambda: vtalign.cosine_knn(X, 2.0), TypeError, "k must be an int"),
    (lambda: vtalign.cosine_knn(X, 0), ValueError, "k must be in"),
    (lambda: vtalign.cosine_knn(X, 20), ValueError, "k must be in"),
    (lambda: vtalign.cosine_knn(X, 2, precision="bogus"), ValueError, "precision must be one of"),
    (lambda: vtalign.cosine_knn(X, 2, max_workspace_bytes="abc"), TypeError, "max_workspace_bytes must be an int"),
    (lambda: vtalign.cosine_knn(X, 2, max_workspace_bytes=0), ValueError, "max_workspace_bytes must be in"),
    (lambda: vtalign.cosine_knn(X, 2, backend="gpu"), ValueError, "backend"),
    (lambda: vtalign.cosine_knn(torch.empty(5, 3, device="meta"), 2), ValueError, "x is a meta tensor"),
    (lambda: vtalign.cosine_knn(X.int(), 2), TypeError, "x must have a floating dtype"),
    (lambda: vtalign.knn(X, X, 2, self_shift=-3), ValueError, "self_shift must be in"),
    (lambda: vtalign.knn(X, X, 2, self_shift=1.5), TypeError, "self_shift must be an int"),
    (lambda: vtalign.knn(X[:5], X, 2, self_shift=17), ValueError, "self_shift=17"),
    (lambda: vtalign.mutual_knn(X, torch.cat([X[:19], torch.full((1, 4), float("nan"))])), ValueError,
     "feats_b contains NaN"),
    (lambda: vtalign.knn_overlap(IDX, IDX + 1), ValueError, "idx_b holds an index >= 20"),
    (lambda: vtalign.knn_overlap(IDX, IDX, n_keys=0), ValueError, "n_keys must be in"),
    (lambda: vtalign.soft_dtw(torch.randn(1, 4, 2), torch.randn(1, 3, 2), bandwidth=-1), ValueError, "bandwidth"),
    (lambda: vtalign.soft_dtw(torch.randn(1, 4, 2), torch.randn(1, 3, 2), gamma=0.0), ValueError, "gamma"),
    (lambda: vtalign.soft_dtw(torch.randn(1, 4, 2), torch.randn(1, 3, 2), cost="l1"), ValueError, "cost must be"),
    (lambda: chance_level("mutual_knn", 1, 1), ValueError, "n must be in"),
    (lambda: chance_level("mutual_knn", 10, 10), ValueError, "k must be in"),
])
def test_bad_arguments_are_named(call, err, match):
    with pytest.raises(err, match=match):
        call()
