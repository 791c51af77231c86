"""Calibration: permutation null from remapped lists, max-over-pairs correction,
bootstrap over samples; checked against direct recomputation and properties."""
import pytest
import torch

from vtalign.ops import cosine_knn
from vtalign.probe.calibration import (
    bootstrap_indices,
    bootstrap_scores,
    calibrate,
    calibrate_lists,
    permutation_null,
    permute_lists,
)
from vtalign.probe.metrics import KNN_METRICS, list_scores
from vtalign.reference import metrics as R


def _aligned(gen, n=120, noise=(0.3, 3.0)):
    z = torch.randn(n, 6, generator=gen)
    a = torch.stack([z @ torch.randn(6, 10, generator=gen) + s * torch.randn(n, 10, generator=gen)
                     for s in noise], 1)
    b = torch.stack([z @ torch.randn(6, 8, generator=gen) + s * torch.randn(n, 8, generator=gen)
                     for s in noise], 1)
    return a, b


def test_permuted_lists_equal_a_new_search(gen):
    x = torch.randn(2, 50, 5, generator=gen)
    idx = cosine_knn(x, 6)[1]
    perm = torch.randperm(50, generator=gen)
    assert torch.equal(permute_lists(idx, perm), cosine_knn(x[:, perm], 6)[1])


@pytest.mark.parametrize("metric", KNN_METRICS)
def test_null_equals_scores_of_permuted_features(metric, gen):
    a, b = _aligned(gen, n=40)
    ia = cosine_knn(a.transpose(0, 1).contiguous(), 4)[1]
    ib = cosine_knn(b.transpose(0, 1).contiguous(), 4)[1]
    null = permutation_null(ia, ib, metric, n_permutations=3, seed=7)
    g = torch.Generator().manual_seed(7)
    for p in range(3):
        perm = torch.randperm(40, generator=g)
        want = R.all_pairs(metric, list(a.unbind(1)), list(b[perm].unbind(1)), 4)
        torch.testing.assert_close(null[p], want, rtol=0, atol=1e-12)


def test_null_mean_is_chance_and_aligned_pair_is_significant(gen):
    a, b = _aligned(gen, n=200)
    cal = calibrate(a, b, k=10, n_permutations=60, n_bootstrap=200, seed=3)
    assert cal.chance == pytest.approx(10 / 199)
    # per-permutation mean has sd ~ 0.005 / sqrt(pairs); 60 permutations
    assert float(cal.null_mean.mean()) == pytest.approx(cal.chance, abs=0.003)
    assert cal.best == (0, 0)
    assert cal.p_best == pytest.approx(1 / 61)
    assert cal.z_best > 10
    lo, hi = cal.best_ci
    assert lo <= cal.best_score <= hi and hi - lo < 0.1
    assert cal.best_stability == 1.0
    # correcting for the max over pairs is never less conservative than the pair alone
    # E[max over pairs] >= max over pairs of E: the corrected null sits above every pair's null
    assert float(cal.null_max.mean()) >= float(cal.null_mean.max())
    assert "best pair A[0] x B[0]" in cal.summary()


def test_unrelated_features_are_not_significant(gen):
    a = torch.randn(150, 3, 8, generator=gen)
    b = torch.randn(150, 3, 8, generator=gen)
    cal = calibrate(a, b, k=5, n_permutations=99, n_bootstrap=100, seed=0)
    i, j = cal.best
    assert cal.p_best >= float(cal.p_pairs[i, j])  # the max-corrected p is the larger one
    assert abs(cal.z_best) < 3
    assert float(cal.scores.max()) < float(cal.null_max.max()) + 0.02


def test_bootstrap_equals_plain_resampling_loop(gen):
    per = torch.rand(2, 3, 30, generator=gen, dtype=torch.float64)
    reps = bootstrap_scores(per, 70, seed=5)  # two blocks of replicates
    rows = torch.cat(list(bootstrap_indices(30, 70, seed=5)))
    assert rows.shape == (70, 30)
    for r in (0, 63, 64, 69):
        torch.testing.assert_close(reps[r], per[..., rows[r]].mean(-1), rtol=0, atol=1e-14)
    assert torch.equal(reps, bootstrap_scores(per, 70, seed=5))
    assert not torch.equal(reps, bootstrap_scores(per, 70, seed=6))


@pytest.mark.parametrize("metric", ["cycle_knn", "lcs_knn", "edit_distance_knn"])
def test_other_list_metrics(metric, gen):
    a, b = _aligned(gen, n=80)
    ia = cosine_knn(a.transpose(0, 1).contiguous(), 5)[1]
    ib = cosine_knn(b.transpose(0, 1).contiguous(), 5)[1]
    cal = calibrate_lists(ia, ib, metric, n_permutations=20, n_bootstrap=50, seed=1)
    torch.testing.assert_close(cal.scores, list_scores(metric, ia, ib))
    assert cal.best_score > float(cal.null_max.max())
    assert cal.chance != cal.chance  # NaN: no closed form; the null mean stands in
    again = calibrate_lists(ia, ib, metric, n_permutations=20, n_bootstrap=50, seed=1)
    assert torch.equal(again.null_max, cal.null_max) and torch.equal(again.ci_low, cal.ci_low)


@pytest.mark.parametrize("kwargs,match", [
    (dict(metric="cka"), "kNN-list metrics"),
    (dict(n_permutations=1), "n_permutations"),
    (dict(n_bootstrap=0), "n_bootstrap"),
    (dict(confidence=1.0), "confidence"),
    (dict(k=40), "k must be"),
])
def test_bad_arguments(kwargs, match, gen):
    x = torch.randn(30, 2, 4, generator=gen)
    with pytest.raises(ValueError, match=match):
        calibrate(x, x, **kwargs)
    with pytest.raises(ValueError, match="per_sample"):
        bootstrap_scores(torch.empty(0))
