"""All-layer-pair metrics against the plain float64 per-pair oracles in
vtalign.reference.metrics (written from platonic-rep's definitions)."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vtalign.ops import cosine_knn
from vtalign.ops._common import has_cpp
from vtalign.probe import metrics as M
from vtalign.probe.alignment import layerwise_alignment, layerwise_alignments
from vtalign.reference import metrics as R

BACKENDS = ["torch"] + (["cpp"] if has_cpp() else [])


def _layers(gen, n=48, widths_a=(7, 5, 9), widths_b=(6, 4)):
    """Layers sharing a latent (so scores are far from chance) plus an offset
    (so centring matters) and one unrelated layer per side."""
    z = torch.randn(n, 4, generator=gen)
    la = [z @ torch.randn(4, w, generator=gen) + s * torch.randn(n, w, generator=gen) + 0.7
          for w, s in zip(widths_a, (0.3, 1.0, 5.0))]
    lb = [z @ torch.randn(4, w, generator=gen) + s * torch.randn(n, w, generator=gen)
          for w, s in zip(widths_b, (0.5, 4.0))]
    return la, lb


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", M.METRICS)
def test_every_metric_equals_per_pair_definition(metric, backend, gen):
    la, lb = _layers(gen)
    res = layerwise_alignment(la, lb, metric=metric, k=5, backend=backend)
    want = R.all_pairs(metric, la, lb, 5)
    assert res.scores.dtype == torch.float64 and res.scores.shape == (3, 2)
    # float32 features: CKA's Gram GEMMs and CKNNA's list dots run in float32 (sums in float64)
    torch.testing.assert_close(res.scores, want, rtol=0, atol=1e-7 if metric in M.GRAM_METRICS else 1e-9)
    res64 = layerwise_alignment([x.double() for x in la], [x.double() for x in lb], metric=metric, k=5,
                                backend=backend)
    torch.testing.assert_close(res64.scores, want, rtol=0, atol=1e-12)
    flat = int(torch.argmax(want))
    assert res.best == (flat // 2, flat % 2)
    assert res.best_score == float(res.scores.max())


@pytest.mark.parametrize("metric", M.METRICS)
def test_nld_tensor_concat_and_unnormalised(metric, gen):
    n, L, D = 40, 3, 6
    z = torch.randn(n, 1, D, generator=gen)
    xa = z + torch.randn(n, L, D, generator=gen) * torch.tensor([0.2, 1.0, 3.0])[None, :, None] + 0.4
    xb = torch.randn(n, 2, D, generator=gen) + z
    for normalize in (True, False):
        got = layerwise_alignment(xa, xb, metric=metric, k=4, normalize=normalize, concat=True).scores
        la = list(xa.unbind(1)) + [xa.flatten(1)]
        lb = list(xb.unbind(1)) + [xb.flatten(1)]
        torch.testing.assert_close(got, R.all_pairs(metric, la, lb, 4, normalize=normalize),
                                   rtol=0, atol=1e-7 if metric in M.GRAM_METRICS else 1e-9)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("workspace", [1 << 26, 4096])
def test_cka_routes_agree(unbiased, workspace, gen):
    """Gram route and covariance route are both exact; a tiny workspace forces row
    chunks, one-row Gram blocks and column-blocked covariance accumulators."""
    la, lb = _layers(gen, n=70, widths_a=(12, 3), widths_b=(30,))
    la, lb = [x.double() for x in la], [x.double() for x in lb]
    want = R.all_pairs("unbiased_cka" if unbiased else "cka", la, lb, 5)
    for route in ("gram", "covariance"):
        got = M.cka_scores(la, lb, unbiased=unbiased, route=route, max_workspace_bytes=workspace)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("route", ["gram", "covariance"])
def test_cka_float32_survives_a_large_common_offset(route, gen):
    """Rows nearly parallel (a shared offset 30x the spread): uncentred float32
    Grams lose most digits to cancellation; centring before the GEMM keeps float
    precision. (Much smaller spreads make platonic-rep's +1e-6 dominate.)"""
    base = torch.randn(1, 16, generator=gen)
    z = torch.randn(60, 3, generator=gen)
    a = base + 0.03 * (z @ torch.randn(3, 16, generator=gen) + 0.5 * torch.randn(60, 16, generator=gen))
    b = -base + 0.03 * (z @ torch.randn(3, 16, generator=gen))
    for unbiased, name in ((False, "cka"), (True, "unbiased_cka")):
        want = R.all_pairs(name, [a], [b], 5)
        got = M.cka_scores([a], [b], unbiased=unbiased, route=route)
        assert 0.2 < float(want) < 0.99
        torch.testing.assert_close(got, want, rtol=0, atol=6e-8)  # uncentred float32: ~2e-7 off


def test_auto_route_picks_covariance_when_n_exceeds_d(gen):
    la, lb = _layers(gen, n=400, widths_a=(3,), widths_b=(2,))
    assert not M._use_gram_route(la, lb)
    assert M._use_gram_route([torch.zeros(10, 300)], [torch.zeros(10, 300)])
    torch.testing.assert_close(M.cka_scores(la, lb, unbiased=True), R.all_pairs("unbiased_cka", la, lb, 5),
                               rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", M.KNN_METRICS)
def test_per_sample_scores_average_to_the_score(metric, backend, gen):
    la, lb = _layers(gen, n=30)
    ia = cosine_knn(torch.stack([la[0], la[0] * 2]), 4)[1]
    ib = cosine_knn(lb[0], 4)[1][None]
    per = M.list_scores(metric, ia, ib, reduce="none", backend=backend)
    assert per.shape == (2, 1, 30)
    torch.testing.assert_close(per.mean(-1), M.list_scores(metric, ia, ib, backend=backend))
    # row 1 of A is row 0 rescaled: same lists, same per-sample scores
    torch.testing.assert_close(per[0], per[1])


perms = st.integers(min_value=1, max_value=7).flatmap(
    lambda k: st.tuples(st.just(k), st.lists(st.permutations(list(range(12))), min_size=2, max_size=2)))


@given(perms)
def test_lcs_and_edit_distance_kernels_equal_plain_dp(case):
    k, (p, q) = case
    a = torch.tensor(p[:k])[None, None].expand(1, 12, k).contiguous()
    b = torch.tensor(q[:k])[None, None].expand(1, 12, k).contiguous()
    for be in BACKENDS:
        lcs = float(M.list_scores("lcs_knn", a, b, backend=be))
        ed = float(M.list_scores("edit_distance_knn", a, b, backend=be))
        assert lcs == R.lcs_length(p[:k], q[:k])
        assert ed == pytest.approx(1 - R.levenshtein(p[:k], q[:k]) / k, abs=1e-12)


def test_identical_features_score_perfectly(gen):
    x = torch.randn(50, 2, 8, generator=gen)
    res = layerwise_alignments(x, x, k=5)
    for metric in ("mutual_knn", "cycle_knn", "edit_distance_knn"):
        assert torch.diagonal(res[metric].scores).tolist() == [1.0, 1.0]
    assert torch.diagonal(res["lcs_knn"].scores).tolist() == [5.0, 5.0]  # not divided by k
    for metric in ("cka", "unbiased_cka", "cknna"):
        d = torch.diagonal(res[metric].scores)
        # h / (h + 1e-6): just below 1 because of platonic-rep's +1e-6
        assert bool((d < 1).all()) and bool((d > 0.999).all()), (metric, d)


def test_shared_lists_give_the_same_scores_as_single_metric_calls(gen):
    la, lb = _layers(gen, n=36)
    together = layerwise_alignments(la, lb, k=4)
    assert set(together) == set(M.METRICS)
    for metric in M.METRICS:
        assert torch.equal(together[metric].scores, layerwise_alignment(la, lb, metric=metric, k=4).scores)


def test_chance_level():
    assert M.chance_level("mutual_knn", 101, 10) == pytest.approx(0.1)
    assert M.chance_level("cka", 101, 10) != M.chance_level("cka", 101, 10)  # NaN: no closed form


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(metric="svcca"), ValueError, "unknown metric"),
    (dict(metric="lcs_knn", k=30), ValueError, "k must be"),
    (dict(metric="cknna", k=1), ValueError, "k must be >= 2"),
    (dict(outliers="median"), ValueError, "outliers must be"),
    (dict(metric="cka", k=10_000), None, None),  # cka does not use k
])
def test_bad_arguments(kwargs, err, match, gen):
    x = torch.randn(30, 2, 3, generator=gen)
    if err is None:
        layerwise_alignment(x, x, **kwargs)
        return
    with pytest.raises(err, match=match):
        layerwise_alignment(x, x, **kwargs)


def test_bad_inputs_name_the_argument(gen):
    with pytest.raises(ValueError, match="unbiased_cka and cknna need N >= 4"):
        layerwise_alignment(torch.randn(3, 1, 2), torch.randn(3, 1, 2), metric="unbiased_cka", k=1)
    bad = [torch.randn(20, 3, generator=gen), torch.randn(20, 3, generator=gen)]
    bad[1][4, 2] = float("inf")
    with pytest.raises(ValueError, match="feats_b layer 1"):
        layerwise_alignment([torch.randn(20, 3)], bad, metric="cka")
    with pytest.raises(ValueError, match="same number of samples"):
        layerwise_alignment([torch.randn(20, 3)], [torch.randn(21, 3)], metric="cknna", k=3)
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        layerwise_alignments(torch.randn(20, 3), torch.randn(20, 3), metrics="cka")
    idx = cosine_knn(torch.randn(10, 3, generator=gen), 3)[1][None]
    with pytest.raises(ValueError, match="idx_b holds indices outside"):
        M.list_scores("lcs_knn", idx, idx + 10)
    with pytest.raises(ValueError, match="agree on"):
        M.list_scores("cycle_knn", idx, idx[:, :, :2])
    with pytest.raises(TypeError, match="idx_a must hold int"):
        M.list_scores("cycle_knn", idx.float(), idx)
    with pytest.raises(ValueError, match="route must be"):
        M.cka_scores([torch.randn(10, 3)], [torch.randn(10, 3)], route="dense")
