"""vtalign.compat.calibrated_similarity against the installed upstream package
(PyPI `calibrated-similarity`) called with the same metric and generator."""
import functools

import pytest
import torch

from vtalign.compat import calibrated_similarity as cs
from vtalign.compat.platonic import AlignmentMetrics as AM

up = pytest.importorskip("calibrated_similarity", reason="calibrated-similarity is not installed "
                         "(pip install calibrated-similarity, in the dev extras)")

N = 40
KNN = {"mutual_knn": functools.partial(AM.mutual_knn, topk=5), "cycle_knn": functools.partial(AM.cycle_knn, topk=5),
       "lcs_knn": functools.partial(AM.lcs_knn, topk=5),
       "edit_distance_knn": functools.partial(AM.edit_distance_knn, topk=5)}
GRAM = {"cka": AM.cka, "unbiased_cka": AM.unbiased_cka, "cknna": functools.partial(AM.cknna, topk=6),
        "cka_partial": functools.partial(AM.cka, unbiased=True)}


def _layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, 6, generator=g)
    x = [base @ torch.randn(6, 10, generator=g) + 0.3 * torch.randn(N, 10, generator=g) for _ in range(3)]
    y = [base @ torch.randn(6, 8, generator=g) + 0.6 * torch.randn(N, 8, generator=g) for _ in range(2)]
    y.append(torch.randn(N, 5, generator=g))
    return x, y


def _both(sim, x, y, **kw):
    a = up.calibrate_layers(x, y, sim, generator=torch.Generator().manual_seed(3), **kw)
    b = cs.calibrate_layers(x, y, sim, generator=torch.Generator().manual_seed(3), **kw)
    return a, b


@pytest.mark.parametrize("name", list(KNN))
@pytest.mark.parametrize("agg", ["max", "mean"])
def test_knn_fast_path_equals_upstream_exactly(name, agg):
    x, y = _layers()
    a, b = _both(KNN[name], x, y, agg=agg, K=15, alpha=0.1)
    for u, v in zip(a, b):
        assert v.dtype == torch.float32 and v.shape == ()
        assert torch.equal(u, v)


@pytest.mark.parametrize("name", list(GRAM))
def test_gram_fast_path_equals_upstream_to_float32(name):
    x, y = _layers(1)
    a, b = _both(GRAM[name], x, y, K=10)
    assert torch.equal(a[1], b[1])  # same permutations, scores far apart from each other
    torch.testing.assert_close(b[0], a[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(b[2], a[2], rtol=0, atol=1e-5)


def test_metric_name_options_and_callable_agg():
    x, y = _layers(2)
    agg = lambda s: s.topk(2, dim=1).values.mean()  # noqa: E731
    a, b = _both(KNN["mutual_knn"], x, y, agg=agg, K=15, smax=None)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = cs.calibrate_layers(x, y, "mutual_knn", topk=5, agg=agg, K=15, smax=None,
                            generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, c))


def test_generic_callable_and_perm_fn_and_scalar_calibrate():
    x, y = _layers(3)

    def cos(p, q):
        return torch.nn.functional.cosine_similarity(p[:, :5], q[:, :5]).mean()

    a, b = _both(cos, x, y, K=12, agg="mean")
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    block = lambda n, device: torch.arange(n, device=device).roll(7)  # noqa: E731
    a = up.calibrate(x[0], y[0], KNN["mutual_knn"], K=5, perm_fn=block)
    b = cs.calibrate(x[0], y[0], KNN["mutual_knn"], K=5, perm_fn=block)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    a = up.calibrate(x[1], y[1], AM.cka, K=9, generator=torch.Generator().manual_seed(0))
    b = cs.calibrate(x[1], y[1], AM.cka, K=9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b[0], a[0], rtol=0, atol=1e-5)


def test_normalize_makes_the_fast_path_scale_invariant():
    x, y = _layers(4)
    kw = dict(K=10, normalize=True)
    a = cs.calibrate_layers(x, y, "cka", generator=torch.Generator().manual_seed(0), **kw)
    b = cs.calibrate_layers([t * 1e4 for t in x], y, "cka", generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kw, match", [(dict(K=0), "K must"), (dict(alpha=0.0), "alpha"), (dict(smax=0.0), "smax"),
                                      (dict(agg="median"), "agg"), (dict(sim="nope"), "sim"),
                                      (dict(sim=3), "sim must"), (dict(generator=1), "generator"),
                                      (dict(sim=AM.mutual_knn), "topk"), (dict(sim="mutual_knn", topk=N), "topk"),
                                      (dict(sim="cknna", topk=1), "topk")])
def test_bad_arguments(kw, match):
    x, y = _layers()
    kw = {"sim": AM.cka, **kw}
    with pytest.raises((ValueError, TypeError), match=match):
        cs.calibrate_layers(x, y, **kw)
    with pytest.raises(ValueError, match="Y_layers\\[0\\]"):
        cs.calibrate_layers(x, [y[0][:5]], AM.cka)
