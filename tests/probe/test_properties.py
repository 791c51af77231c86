"""Property tests of the probing API (hypothesis; the profile is in tests/conftest.py):

(a) scale invariance: cosine quantities do not change when the features are
    multiplied by 1e-20 ... 1e20 -- the kNN metrics exactly, CKA / CKNNA within
    1e-9 relative (float64; float32 features are rounded by the multiplication
    itself, so there the Gram metrics agree to float32 precision, and exactly for
    power-of-two scales);
(b) permutation equivariance: permuting the samples of both feature sets the
    same way leaves every alignment score unchanged;
(c) every argument's type and range is checked, naming the argument, before
    anything is computed, for arbitrary bad values.

Random features have no exact kNN ties, but a rescaled or reordered float sum may
swap two neighbours whose similarities differ in the last bits; examples with such
near-ties are skipped (`assume`), as the kNN tests do elsewhere.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import vtalign.probe.alignment as alignment
import vtalign.probe.calibration as calibration
import vtalign.probe.scaling as scaling
from vtalign.probe import calibrate, fit_scaling_law, layerwise_alignments
from vtalign.probe.calibration import bootstrap_scores
from vtalign.probe.metrics import GRAM_METRICS, KNN_METRICS, METRICS
from vtalign.probe.scaling import scaling_law

# 15 examples per property under the "ci" profile (20 by default; keeps the file near 30 s),
# the profile's own number under HYPOTHESIS_PROFILE=thorough
_PROFILE = settings.default.max_examples
EXAMPLES = settings(max_examples=15 if _PROFILE <= 20 else _PROFILE)


@st.composite
def feature_pairs(draw, dtype=torch.float64, min_dim=2):
    """(a [N, La, Da], b [N, Lb, Db], k) from a seeded generator: small, so one example is milliseconds."""
    n = draw(st.integers(8, 20))
    la, lb = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    da, db = draw(st.integers(min_dim, 6)), draw(st.integers(min_dim, 6))
    k = draw(st.integers(2, min(5, n - 2)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    z = torch.randn(n, 3, generator=g, dtype=torch.float64)  # shared latent: scores are not all at chance
    a = torch.stack([z @ torch.randn(3, da, generator=g, dtype=torch.float64)
                     + torch.randn(n, da, generator=g, dtype=torch.float64) for _ in range(la)], 1)
    b = torch.stack([z @ torch.randn(3, db, generator=g, dtype=torch.float64)
                     + torch.randn(n, db, generator=g, dtype=torch.float64) for _ in range(lb)], 1)
    return a.to(dtype), b.to(dtype), k


def _separated(x: torch.Tensor, k: int, tol: float) -> bool:
    """No near-tie among the k + 1 best neighbours of any row of any layer of x `[N, L, D]`."""
    u = torch.nn.functional.normalize(x.double(), dim=-1).transpose(0, 1)
    s = u @ u.transpose(1, 2)
    s.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    top = s.topk(k + 1, dim=-1).values
    return bool((top[..., :-1] - top[..., 1:]).min() > tol)


def _assert_same(got: dict, want: dict, rtol: float) -> None:
    for m in want:
        g, w = got[m].scores, want[m].scores
        if m in KNN_METRICS:
            assert torch.equal(g, w), m
        else:
            err = float(((g - w).abs() / w.abs().clamp_min(1e-3)).max())
            assert err <= rtol, f"{m}: relative change {err:.2e} > {rtol:.0e}"


# ------------------------------------------------------------------ (a) scale invariance
@EXAMPLES
@given(feature_pairs(), st.integers(-20, 20), st.integers(-20, 20))
def test_scores_do_not_depend_on_the_features_scale(pair, ea, eb):
    a, b, k = pair
    assume(_separated(a, k, 1e-9) and _separated(b, k, 1e-9))
    want = layerwise_alignments(a, b, list(METRICS), k=k)
    got = layerwise_alignments(a * 10.0 ** ea, b * 10.0 ** eb, list(METRICS), k=k)
    _assert_same(got, want, rtol=1e-9)


@EXAMPLES
@given(feature_pairs(torch.float32), st.integers(-20, 20), st.sampled_from([None, "exact", "approximate"]),
       st.booleans())
def test_float32_scores_under_decimal_scales(pair, e, outliers, concat):
    # 10^e is not a power of two: x * 10^e is rounded to float32, so the Gram metrics
    # move by float32 rounding; the kNN lists (away from near-ties) stay exactly equal
    a, b, k = pair
    assume(_separated(a, k, 1e-4) and _separated(b, k, 1e-4))
    kw = dict(k=k, outliers=outliers, concat=concat)
    if outliers is not None:  # the clamp changes the rows; check the tie margin on what is searched
        assume(all(_separated(torch.stack(alignment.prepare_layers("x", t, outliers=outliers), 1), k, 1e-4)
                   for t in (a, b)))
    want = layerwise_alignments(a, b, list(METRICS), **kw)
    got = layerwise_alignments(a * 10.0 ** e, b * 10.0 ** e, list(METRICS), **kw)
    _assert_same(got, want, rtol=1e-4)


@EXAMPLES
@given(feature_pairs(torch.float32), st.integers(-100, 100), st.sampled_from([None, "exact", "approximate"]),
       st.booleans())
def test_power_of_two_scales_change_nothing(pair, e, outliers, concat):
    # an exact rescaling (x * 2^e is exact in float32 for |e| <= 100 here): every
    # score, Gram metrics included, is bit-identical
    a, b, k = pair
    kw = dict(k=k, outliers=outliers, concat=concat)
    want = layerwise_alignments(a, b, list(METRICS), **kw)
    got = layerwise_alignments(a * 2.0 ** e, b * 2.0 ** e, list(METRICS), **kw)
    for m in METRICS:
        assert torch.equal(got[m].scores, want[m].scores), m


@EXAMPLES
@given(feature_pairs(), st.integers(-20, 20), st.sampled_from(KNN_METRICS))
def test_calibration_does_not_depend_on_the_features_scale(pair, e, metric):
    a, b, k = pair
    assume(_separated(a, k, 1e-9) and _separated(b, k, 1e-9))
    kw = dict(k=k, n_permutations=8, n_bootstrap=8, seed=3)
    want, got = calibrate(a, b, metric, **kw), calibrate(a * 10.0 ** e, b * 10.0 ** -e, metric, **kw)
    for f in ("scores", "null_max", "z_pairs", "p_pairs", "ci_low", "ci_high"):
        assert torch.equal(getattr(got, f), getattr(want, f)), f
    assert (got.best, got.z_best, got.p_best) == (want.best, want.z_best, want.p_best)
    assert not torch.isnan(got.z_pairs).any()


@pytest.mark.xfail(strict=True, reason="CKA / CKNNA without normalisation divide by sqrt(HSIC_a HSIC_b) + 1e-6 "
                                       "(platonic-rep's absolute epsilon, probe/metrics.py _cka_ratio): features "
                                       "scaled by 1e-10 score ~0 instead of their CKA")
def test_unnormalised_gram_metrics_do_not_depend_on_the_scale():
    a, b, k = _fixed_pair()
    want = layerwise_alignments(a, b, list(GRAM_METRICS), k=k, normalize=False)
    got = layerwise_alignments(a * 1e-10, b * 1e-10, list(GRAM_METRICS), k=k, normalize=False)
    _assert_same(got, want, rtol=1e-9)


def _fixed_pair():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(16, 2, 4, generator=g, dtype=torch.float64)
    return a, a[:, :1] + 0.5 * torch.randn(16, 1, 4, generator=g, dtype=torch.float64), 3


def test_unnormalised_knn_metrics_do_not_depend_on_the_scale():
    a, b, k = _fixed_pair()
    for c in (1e-20, 1e20):
        want = layerwise_alignments(a, b, list(KNN_METRICS), k=k, normalize=False)
        got = layerwise_alignments(a * c, b * c, list(KNN_METRICS), k=k, normalize=False)
        _assert_same(got, want, rtol=0)


@EXAMPLES
@given(st.floats(0.2, 0.8), st.floats(0.01, 0.3), st.floats(0.3, 2.5), st.floats(0.01, 0.3), st.floats(0.3, 2.5),
       st.integers(-150, 150), st.integers(0, 2 ** 31 - 1))
def test_scaling_fit_does_not_depend_on_the_scores_scale(s_inf, cf, alpha, cc, beta, e, seed):
    f, c = np.meshgrid([1.0, 2, 4, 8, 16], [1.0, 2, 3, 5], indexing="ij")
    f, c = f.ravel(), c.ravel()
    y = scaling_law(f, c, s_inf, cf, alpha, cc, beta) + np.random.default_rng(seed).normal(0, 1e-3, f.size)
    want, got = fit_scaling_law(f, c, y), fit_scaling_law(f, c, y * 10.0 ** e)
    assert got.r2 == pytest.approx(want.r2, rel=1e-9, abs=1e-12)
    for p in ("S_inf", "C_f", "C_c"):
        assert got.params[p] / 10.0 ** e == pytest.approx(want.params[p], rel=1e-6, abs=1e-9)
    for p in ("alpha", "beta"):
        assert got.params[p] == pytest.approx(want.params[p], rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------ (b) permutation equivariance
@EXAMPLES
@given(feature_pairs(), st.integers(0, 2 ** 31 - 1))
def test_permuting_samples_of_both_sides_changes_no_score(pair, seed):
    a, b, k = pair
    assume(_separated(a, k, 1e-9) and _separated(b, k, 1e-9))
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))
    want = layerwise_alignments(a, b, list(METRICS), k=k)
    got = layerwise_alignments(a[perm], b[perm], list(METRICS), k=k)
    _assert_same(got, want, rtol=1e-9)


@EXAMPLES
@given(feature_pairs(torch.float32), st.integers(0, 2 ** 31 - 1))
def test_permuting_float32_samples_changes_no_score(pair, seed):
    a, b, k = pair
    assume(_separated(a, k, 1e-4) and _separated(b, k, 1e-4))
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))
    want = layerwise_alignments(a, b, list(METRICS), k=k, concat=True)
    got = layerwise_alignments(a[perm], b[perm], list(METRICS), k=k, concat=True)
    _assert_same(got, want, rtol=1e-4)  # float32 GEMMs sum in another order


@EXAMPLES
@given(feature_pairs(), st.integers(0, 2 ** 31 - 1))
def test_permuting_samples_keeps_the_calibrated_scores(pair, seed):
    # the observed scores and the chance level are equivariant; the null draws its
    # own permutations, so only its distribution (not each draw) is preserved
    a, b, k = pair
    assume(_separated(a, k, 1e-9) and _separated(b, k, 1e-9))
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))
    kw = dict(k=k, n_permutations=4, n_bootstrap=4)
    want, got = calibrate(a, b, **kw), calibrate(a[perm], b[perm], **kw)
    assert torch.equal(got.scores, want.scores) and got.chance == want.chance and got.best == want.best


@EXAMPLES
@given(st.integers(0, 2 ** 31 - 1))
def test_permuting_table_rows_keeps_the_fit(seed):
    rng = np.random.default_rng(seed)
    f, c = np.meshgrid([1.0, 2, 4, 8, 16], [1.0, 2, 3, 5], indexing="ij")
    f, c = f.ravel(), c.ravel()
    y = scaling_law(f, c, 0.45, 0.12, 0.8, 0.1, 1.3) + rng.normal(0, 1e-3, f.size)
    p = rng.permutation(f.size)
    want, got = fit_scaling_law(f, c, y), fit_scaling_law(f[p], c[p], y[p])
    assert got.r2 == pytest.approx(want.r2, rel=1e-9)
    for name, v in want.params.items():
        assert got.params[name] == pytest.approx(v, rel=1e-6, abs=1e-9), name


@EXAMPLES
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12), st.integers(1, 70), st.integers(0, 2 ** 20))
def test_bootstrap_replicates_are_means_of_the_inputs(values, reps, seed):
    per = torch.tensor(values, dtype=torch.float64)
    out = bootstrap_scores(per, reps, seed)
    assert out.shape == (reps,) and torch.isfinite(out).all()
    assert float(out.min()) >= per.min() - 1e-9 * (1 + abs(float(per.min())))
    assert float(out.max()) <= per.max() + 1e-9 * (1 + abs(float(per.max())))


# ------------------------------------------------------------------ (c) any bad value, any argument
class Computed(Exception):
    pass


def _boom(*a, **k):
    raise Computed("computation started before the arguments were checked")


_NO_COMPUTE = [(alignment, "all_pair_scores"), (alignment, "outlier_threshold"), (alignment, "layer_lists"),
               (calibration, "layer_knn"), (calibration, "list_scores"), (calibration, "permutation_null"),
               (scaling, "least_squares"), (scaling, "_linear_part")]

_X = torch.randn(12, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
_F, _C = (g.ravel() for g in np.meshgrid([1.0, 2, 4], [1.0, 2, 3], indexing="ij"))
_Y = np.linspace(0.1, 0.5, 9)

# (entry point, argument, is the value valid?): each argument of each entry point
INTS_FROM = lambda lo, hi=None: (lambda v: type(v) is int and v >= lo and (hi is None or v <= hi))  # noqa: E731
CASES = [
    ("layerwise_alignments", "k", INTS_FROM(1, 11)),
    ("layerwise_alignments", "normalize", lambda v: type(v) is bool),
    ("layerwise_alignments", "concat", lambda v: type(v) is bool),
    ("layerwise_alignments", "outliers", lambda v: v in (None, "exact", "approximate")),
    ("layerwise_alignments", "backend", lambda v: v in ("auto", "cpp", "torch", "reference", "triton")),
    ("layerwise_alignments", "max_workspace_bytes", INTS_FROM(1)),
    ("layerwise_alignments", "metrics", lambda v: False),  # the values drawn below are never metric lists
    ("calibrate", "k", INTS_FROM(1, 10)),
    ("calibrate", "metric", lambda v: v in KNN_METRICS),
    ("calibrate", "n_permutations", INTS_FROM(2)),
    ("calibrate", "n_bootstrap", INTS_FROM(2)),
    ("calibrate", "confidence", lambda v: type(v) in (int, float) and 0 < v < 1),
    ("calibrate", "seed", INTS_FROM(0, 2 ** 63 - 1)),
    ("calibrate", "normalize", lambda v: type(v) is bool),
    ("bootstrap_scores", "n_bootstrap", INTS_FROM(1)),
    ("bootstrap_scores", "seed", INTS_FROM(0, 2 ** 63 - 1)),
    ("fit_scaling_law", "scores", lambda v: False),
]

BAD_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.integers(-10, 0),
                       st.integers(2 ** 63, 2 ** 64),
                       st.floats(allow_nan=True, allow_infinity=True), st.just([]), st.just(()), st.just({}),
                       st.just(object()), st.just(np.float32(2.0)), st.just(torch.tensor(3)))


def _call(fn: str, arg: str, value):
    from vtalign import probe

    if fn == "layerwise_alignments":
        kw = dict(metrics=["mutual_knn", "cka"], k=3)
        kw[arg] = value
        return probe.layerwise_alignments(_X, _X, **kw)
    if fn == "calibrate":
        kw = dict(k=3, n_permutations=4, n_bootstrap=4)
        kw[arg] = value
        return probe.calibrate(_X, _X, **kw)
    if fn == "bootstrap_scores":
        return bootstrap_scores(torch.ones(5), **{arg: value})
    return fit_scaling_law(_F, _C, value)


@settings(max_examples=40 if _PROFILE <= 20 else 2 * _PROFILE)
@given(st.sampled_from(CASES), BAD_VALUES)
def test_any_bad_value_of_any_argument_is_named_before_computing(case, value):
    fn, arg, valid = case
    try:
        ok = valid(value)
    except Exception:
        ok = False
    assume(not ok)
    with pytest.MonkeyPatch.context() as mp:
        for mod, name in _NO_COMPUTE:
            mp.setattr(mod, name, _boom)
        with pytest.raises((TypeError, ValueError)) as exc:
            _call(fn, arg, value)
    msg = str(exc.value)
    assert arg in msg or (arg == "metrics" and "metric" in msg), msg
