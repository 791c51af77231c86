"""layerwise_alignment (mutual kNN) equals platonic-rep's per-pair loop."""
import pytest
import torch

from tests.ops.test_overlap import platonic_mutual_knn
from vtalign.data.synthetic import layer_stacks
from vtalign.probe import layerwise_alignment


def test_all_pairs_equal_per_pair_definition():
    d = layer_stacks(n=160, layers_a=4, layers_b=3, dim=24, best=(2, 1), seed=3)
    res = layerwise_alignment(d.feats_a, d.feats_b, k=5)
    assert res.scores.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            want = platonic_mutual_knn(d.feats_a[:, i], d.feats_b[:, j], 5)
            assert float(res.scores[i, j]) == pytest.approx(want, abs=1e-12)
    assert res.best == (2, 1)  # the planted pair
    assert res.best_score == float(res.scores.max())


def test_list_of_layers_with_different_widths(gen):
    n = 90
    z = torch.randn(n, 5, generator=gen)
    la = [z @ torch.randn(5, w, generator=gen) for w in (7, 12)]
    lb = [torch.randn(n, 9, generator=gen), z @ torch.randn(5, 4, generator=gen)]
    res = layerwise_alignment(la, lb, k=4)
    for i in range(2):
        for j in range(2):
            assert float(res.scores[i, j]) == pytest.approx(platonic_mutual_knn(la[i], lb[j], 4), abs=1e-12)
    assert res.best[1] == 1


def test_best_is_first_maximum_row_major():
    x = torch.randn(40, 2, 6)
    res = layerwise_alignment(x, x, k=3)  # identical layers: ties on the diagonal and beyond
    flat = res.scores.flatten()
    first = int((flat == flat.max()).nonzero()[0])
    assert res.best == (first // 2, first % 2)


def test_concat_layer_appended():
    d = layer_stacks(n=80, layers_a=3, layers_b=2, dim=8, best=(1, 0), seed=1)
    res = layerwise_alignment(d.feats_a, d.feats_b, k=3, concat=True)
    assert res.scores.shape == (4, 3)
    assert res.names_a[-1] == "all" and res.names_b[-1] == "all"
    want = platonic_mutual_knn(d.feats_a.flatten(1, 2), d.feats_b.flatten(1, 2), 3)
    assert float(res.scores[-1, -1]) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=0), "k must be"),
    (dict(metric="nope"), "unknown metric"),
])
def test_bad_arguments(kwargs, match):
    x = torch.randn(20, 2, 3)
    with pytest.raises(ValueError, match=match):
        layerwise_alignment(x, x, **kwargs)


def test_mismatched_samples_and_nan_layer():
    with pytest.raises(ValueError, match="same number of samples"):
        layerwise_alignment(torch.randn(20, 2, 3), torch.randn(21, 2, 3))
    bad = torch.randn(20, 3, 4)
    bad[5, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 2"):
        layerwise_alignment(bad, torch.randn(20, 2, 3))
