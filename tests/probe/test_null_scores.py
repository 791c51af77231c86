"""The permutation null of every metric against the float64 reference evaluated
on the permuted features B[π] (a fresh search / Gram per permutation), and the
calibrated aggregate's arithmetic against its definition."""
import math

import pytest
import torch

from vtalign.probe.aristotelian import calibrate_scores, calibrated_alignment, critical_value, null_scores
from vtalign.probe.metrics import layer_lists
from vtalign.probe.null_scores import GramNull, draw_permutations
from vtalign.reference import metrics as R

N, K_NN = 26, 4


def _layers(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, 5, generator=g, dtype=dtype)
    a = [base @ torch.randn(5, 7, generator=g, dtype=dtype) * 3 + 1, torch.randn(N, 6, generator=g, dtype=dtype)]
    b = [base @ torch.randn(5, 4, generator=g, dtype=dtype) + 0.2 * torch.randn(N, 4, generator=g, dtype=dtype),
         torch.randn(N, 3, generator=g, dtype=dtype) + 2, torch.randn(N, 9, generator=g, dtype=dtype)]
    return a, b


def _reference(metric, a, b, perms, normalize=True):
    return torch.tensor([[[R.pair_score(metric, x, y[p], K_NN, normalize) for y in b] for x in a] for p in perms],
                        dtype=torch.float64)


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka",
                                    "unbiased_cka", "cknna"])
@pytest.mark.parametrize("normalize", [True, False])
def test_null_matches_reference_on_permuted_features(metric, normalize):
    a, b = _layers()
    perms = draw_permutations(N, 4, generator=torch.Generator().manual_seed(5))
    obs, null = null_scores(metric, a, b, perms, k=K_NN, normalize=normalize)
    ident = torch.arange(N).unsqueeze(0)
    torch.testing.assert_close(obs, _reference(metric, a, b, ident, normalize)[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(null, _reference(metric, a, b, perms, normalize), rtol=0, atol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_gram_and_covariance_routes_agree_in_float32(unbiased):
    a, b = _layers(1)
    a32, b32 = [x.float() for x in a], [x.float() for x in b]
    perms = draw_permutations(N, 6, generator=torch.Generator().manual_seed(2))
    ref = _reference("unbiased_cka" if unbiased else "cka", a, b, perms)
    for route in ("gram", "covariance"):
        got = GramNull(a32, b32, route=route).scores(perms, unbiased=unbiased)
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)


def test_permutations_are_torch_randperm_draws():
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    perms = draw_permutations(30, 3, generator=g1)
    for p in perms:
        assert torch.equal(p, torch.randperm(30, generator=g2))
    with pytest.raises(ValueError, match="perm_fn must return a permutation"):
        draw_permutations(5, 1, perm_fn=lambda n, d: torch.zeros(n, dtype=torch.long))


def test_critical_value_p_and_score_follow_the_definition():
    scores = torch.tensor([[0.5, 0.2], [0.1, 0.3]], dtype=torch.float64)
    null = torch.rand(19, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.6
    res = calibrate_scores(scores, null, agg="max", alpha=0.1, smax=1.0)
    t_null = null.flatten(1).amax(1)
    combined = sorted([0.5] + t_null.tolist())
    tau = combined[math.ceil(0.9 * 20) - 1]
    assert res.tau == tau and res.best == (0, 0)
    assert res.p_value == (1 + sum(t >= 0.5 for t in t_null.tolist())) / 20
    assert res.calibrated == pytest.approx(min(1.0, max(0.0, (0.5 - tau) / (1.0 - tau))))
    mean = calibrate_scores(scores, null, agg="mean", alpha=0.1, smax=None)
    t_mean = null.flatten(1).mean(1)
    tau_m = sorted([0.275] + t_mean.tolist())[17]
    assert mean.tau == pytest.approx(tau_m) and mean.calibrated == pytest.approx(max(0.0, 0.275 - tau_m))
    same = calibrate_scores(scores, null, agg=lambda s: s.flatten().mean(), alpha=0.1, smax=None)
    assert same.tau == pytest.approx(mean.tau) and same.p_value == mean.p_value
    assert float(critical_value(torch.tensor(1.0), torch.zeros(3), 0.5)) == 0.0


def test_calibrated_alignment_scale_invariant_and_deterministic():
    a, b = _layers(3, torch.float32)
    for metric in ("mutual_knn", "cka"):
        r1 = calibrated_alignment(a, b, metric, 4, n_permutations=20, seed=4)
        r2 = calibrated_alignment([x * 1e6 for x in a], [y * 1e-6 for y in b], metric, 4, n_permutations=20, seed=4)
        assert r1.p_value == r2.p_value and r1.calibrated == pytest.approx(r2.calibrated, abs=1e-5)
        assert r1.statistic == pytest.approx(r2.statistic, abs=1e-5)
        assert r1.p_value < 0.1 and r1.calibrated > 0  # B shares A's base: above its null


def test_null_data_is_rarely_significant():
    g = torch.Generator().manual_seed(11)
    a = [torch.randn(60, 8, generator=g) for _ in range(2)]
    b = [torch.randn(60, 8, generator=g) for _ in range(2)]
    p = [calibrated_alignment(a, b, "cka", n_permutations=19, seed=s).p_value for s in range(8)]
    assert min(p) >= 0.05  # unrelated features: the observed max is never extreme here


@pytest.mark.parametrize("kw, match", [(dict(metric="nope"), "unknown metric"), (dict(alpha=1.5), "alpha"),
                                      (dict(n_permutations=0), "n_permutations"), (dict(smax=-1), "smax"),
                                      (dict(agg="median"), "agg"), (dict(k=0), "k must be"),
                                      (dict(lists=(torch.zeros(2, N, 3, dtype=torch.long),) * 2), "lists must")])
def test_bad_arguments_named_before_work(kw, match):
    a, b = _layers()
    with pytest.raises((ValueError, TypeError), match=match):
        calibrated_alignment(a, b, **{"metric": "mutual_knn", **kw})


def test_lists_are_reused():
    a, b = _layers(4)
    lists = (layer_lists(a, K_NN), layer_lists(b, K_NN))
    r1 = calibrated_alignment(a, b, "cknna", K_NN, n_permutations=10, lists=lists)
    r2 = calibrated_alignment(a, b, "cknna", K_NN, n_permutations=10)
    assert r1.statistic == r2.statistic and torch.equal(r1.null, r2.null)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("i32", ["int32", "int64 index", "int64 chunk"])
def test_overlap_index_counts_equal_the_list_kernel(i32, backend, monkeypatch):
    from vtalign.ops import overlap_null
    from vtalign.ops._common import has_cpp

    if backend == "cpp" and not has_cpp():
        pytest.skip("the C++ core is not built")
    from vtalign.ops.overlap_null import OverlapIndex
    from vtalign.probe.null_scores import knn_null

    if i32 == "int64 index":  # positions past int32 (forced small): int64 throughout
        monkeypatch.setattr(overlap_null, "_I32", 100)

    a, b = _layers(6)
    ia, ib = layer_lists(a, K_NN), layer_lists(b, K_NN)
    perms = draw_permutations(N, 7, generator=torch.Generator().manual_seed(1))
    index = OverlapIndex([ia, ib, ia[:1]])
    per_model = index.split(index.counts(ib, perms, backend=backend))
    for lists, got in zip((ia, ib, ia[:1]), per_model):
        assert torch.equal(got, knn_null(lists, ib, "mutual_knn", perms))
    many = OverlapIndex([ia] * 33 + [ib])  # > 64 indexed layers: the unfiltered path
    if i32 == "int64 chunk":  # an int32 index, but a chunk's hit numbers could pass int32
        monkeypatch.setattr(overlap_null, "_I32", 10 ** 4)
    assert all(torch.equal(got, knn_null(lists, ib, "mutual_knn", perms))
               for lists, got in zip([ia] * 33 + [ib], many.split(many.counts(ib, perms, backend=backend))))


def test_calibrated_alignment_takes_every_feature_layout(tmp_path):
    from vtalign.probe.features import open_features, save_features

    a, b = _layers(7, torch.float32)
    stacked = torch.stack([a[0][:, :5], a[1][:, :5]], 1)  # [N, L, D]
    save_features(str(tmp_path / "b.pt"), b)
    r1 = calibrated_alignment(stacked, b, "cka", n_permutations=9, seed=1)
    with open_features(str(tmp_path / "b.pt")) as ff:
        r2 = calibrated_alignment([stacked[:, 0], stacked[:, 1]], ff, "cka", n_permutations=9, seed=1)
    assert r1.calibrated == r2.calibrated and r1.p_value == r2.p_value
    bad = [b[0].clone(), b[1]]
    bad[0][3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        calibrated_alignment(a, bad, "cka")


def test_overlap_index_refuses_a_bad_backend_and_bad_lists():
    from vtalign.ops._common import has_cpp
    from vtalign.ops.overlap_null import OverlapIndex

    a, b = _layers(8)
    ia, ib = layer_lists(a, K_NN), layer_lists(b, K_NN)
    perms = draw_permutations(N, 2, generator=torch.Generator().manual_seed(2))
    index = OverlapIndex([ia])
    with pytest.raises(ValueError, match="backend must be one of"):
        index.counts(ib, perms, backend="triton")
    if has_cpp():  # an index outside [0, N) is refused, not read out of bounds
        bad = ib.clone()
        bad[0, 0, 0] = N
        with pytest.raises(ValueError, match=r"outside \[0, N\)"):
            index.counts(bad, perms, backend="cpp")
