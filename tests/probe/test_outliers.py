"""platonic-rep's outlier clamp: thresholds against the plain float64 definition,
one threshold for a [N, L, D] tensor, one per layer for a list."""
import pytest
import torch

from vtalign.probe.alignment import layerwise_alignment
from vtalign.probe.outliers import clamp_features, outlier_threshold, remove_outliers
from vtalign.reference import metrics as R


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("q", [0.95, 0.5, 0.999])
def test_clamp_equals_definition(exact, q, gen):
    x = torch.randn(37, 3, 11, generator=gen) ** 3
    got = remove_outliers(x, q, exact=exact)
    want = R.remove_outliers(x, q, exact=exact)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)
    assert got.dtype == x.dtype
    t = float(want.abs().max())
    assert float(got.abs().max()) == pytest.approx(t, rel=1e-6)
    assert bool((x.abs() > t).any())  # the clamp did bite


def test_exact_threshold_is_an_element_and_chunked_quantile_matches_torch(gen):
    x = torch.randn(300, 50, generator=gen)
    t = outlier_threshold(x, 0.95, exact=True)
    assert bool((x.abs() == t).any())
    want = float(torch.quantile(x.abs().double(), 0.95, dim=1).mean())
    import vtalign.probe.outliers as O
    old, O._CHUNK_ELEMS = O._CHUNK_ELEMS, 120  # force many row chunks
    try:
        assert outlier_threshold(x, 0.95) == pytest.approx(want, rel=1e-12)
    finally:
        O._CHUNK_ELEMS = old
    assert remove_outliers(x, 1.0) is x


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_tensor_shares_one_threshold_list_gets_one_per_layer(mode, gen):
    big = torch.randn(40, 2, 6, generator=gen)
    big[:, 1] *= 20  # layer 1 is much larger: a shared threshold clips it hard
    exact = mode == "exact"
    shared = clamp_features(big, mode)
    per_layer = clamp_features(list(big.unbind(1)), mode)
    torch.testing.assert_close(shared.double(), R.remove_outliers(big, exact=exact), rtol=1e-6, atol=1e-7)
    for l in range(2):
        torch.testing.assert_close(per_layer[l].double(), R.remove_outliers(big[:, l], exact=exact),
                                   rtol=1e-6, atol=1e-7)
    assert not torch.equal(shared[:, 0], per_layer[0])
    # the probe applies the same rule to both sides before scoring
    other = torch.randn(40, 1, 5, generator=gen) ** 3
    other_clamped = [R.remove_outliers(other, exact=exact)[:, 0]]
    for feats, clamped in ((big, list(shared.unbind(1))), (list(big.unbind(1)), per_layer)):
        got = layerwise_alignment(feats, other, metric="cka", outliers=mode).scores
        want = R.all_pairs("cka", clamped, other_clamped, 10)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="q must be"):
        remove_outliers(torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="outliers must be"):
        clamp_features(torch.randn(4, 3), "fast")
    with pytest.raises(TypeError, match="feats must be"):
        clamp_features("x", "exact")
