"""Bad input to the soft-DTW ops fails with a clear error before any kernel runs."""
import pytest
import torch

import vtalign
from vtalign.nn import S2DTW, SoftDTW


@pytest.fixture
def xy(gen):
    return (torch.randn(2, 5, 3, generator=gen, dtype=torch.float64),
            torch.randn(2, 4, 3, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_gamma(xy, gamma):
    with pytest.raises(ValueError, match="gamma"):
        vtalign.soft_dtw(*xy, gamma)
    with pytest.raises(ValueError, match="gamma"):
        vtalign.soft_dtw(*xy, torch.tensor([0.5, gamma], dtype=torch.float64))


def test_gamma_types_and_shapes(xy):
    with pytest.raises(TypeError, match="gamma"):
        vtalign.soft_dtw(*xy, "1.0")
    with pytest.raises(ValueError, match="gamma"):
        vtalign.soft_dtw(*xy, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="smoothing_gamma"):
        vtalign.s2dtw(*xy, smoothing_gamma=0.0)


@pytest.mark.parametrize("kw,match", [
    (dict(x_lengths=[0, 5]), r"x_lengths\[0\] = 0"),
    (dict(x_lengths=[5, 6]), r"x_lengths\[1\] = 6 is outside \[1, 5\]"),
    (dict(y_lengths=[4, -1]), r"y_lengths\[1\]"),
    (dict(y_lengths=[4]), "one length per sequence"),
    (dict(x_lengths=torch.tensor([1.5, 2.0])), "integers"),
])
def test_bad_lengths(xy, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        vtalign.soft_dtw(*xy, 1.0, **kw)


def test_mismatched_shapes(gen):
    x = torch.randn(2, 5, 3, generator=gen)
    with pytest.raises(ValueError, match="batch size"):
        vtalign.soft_dtw(x, torch.randn(3, 4, 3, generator=gen))
    with pytest.raises(ValueError, match="feature size"):
        vtalign.soft_dtw(x, torch.randn(2, 4, 2, generator=gen))
    with pytest.raises(ValueError, match="feature size"):
        vtalign.soft_dtw_pairwise(x, torch.randn(3, 4, 2, generator=gen))
    with pytest.raises(ValueError, match="3-D"):
        vtalign.soft_dtw(x[0], x[0])
    with pytest.raises(ValueError, match="3-D"):
        vtalign.soft_dtw_cost(torch.rand(4, 4))
    with pytest.raises(TypeError, match="floating"):
        vtalign.soft_dtw(x.long(), x.long())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(xy, bad):
    x, y = xy
    x = x.clone()
    x[1, 2, 0] = bad
    with pytest.raises(ValueError, match="x contains (NaN|Inf)"):
        vtalign.soft_dtw(x, y)
    C = torch.rand(2, 3, 3, dtype=torch.float64)
    C[0, 1, 1] = bad
    with pytest.raises(ValueError, match="C contains"):
        vtalign.soft_dtw_cost(C)


def test_band_below_minimum_names_the_pair():
    C = torch.rand(3, 9, 9, dtype=torch.float64)
    # pair 1 has lengths (9, 2): slope 8 needs a wider band than pair 0 (9, 9)
    with pytest.raises(ValueError, match=r"pair 1 with lengths \(n=9, m=2\).*minimum 4|minimum 4.*pair 1"):
        vtalign.soft_dtw_cost(C, 1.0, bandwidth=1, y_lengths=[9, 2, 9])
    x, y = torch.randn(2, 9, 2), torch.randn(3, 3, 2)
    with pytest.raises(ValueError, match=r"pair \(x\[0\], y\[0\]\)"):
        vtalign.soft_dtw_pairwise(x, y, 1.0, bandwidth=0)
    with pytest.raises(ValueError, match="bandwidth"):
        vtalign.soft_dtw_cost(C, 1.0, bandwidth=-1)
    with pytest.raises(TypeError, match="bandwidth"):
        vtalign.soft_dtw_cost(C, 1.0, bandwidth="3")


def test_bad_cost_and_backend(xy):
    with pytest.raises(ValueError, match="cost must be one of"):
        vtalign.soft_dtw(*xy, cost="euclid")
    with pytest.raises(ValueError, match="backend must be one of"):
        vtalign.soft_dtw(*xy, backend="cuda")
    with pytest.raises(ValueError, match="callable cost must return shape"):
        vtalign.soft_dtw(*xy, cost=lambda a, b: torch.zeros(2, 2, 2, dtype=a.dtype))


def test_modules_reject_bad_configuration():
    with pytest.raises(ValueError, match="bandwidth"):
        SoftDTW(False, bandwidth=-2)
    with pytest.raises(ValueError, match="dist_func"):
        SoftDTW(False, dist_func="manhattan")
    with pytest.raises(ValueError, match="null_cost"):
        S2DTW(null_cost=float("nan"))(torch.randn(1, 3, 2), torch.randn(1, 3, 2))


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("bad, where", [(float("nan"), "y"), (float("-inf"), "x"), (float("inf"), "y")])
def test_non_finite_features_on_the_fused_size(gen, cost, bad, where):
    # B = 16 float32 is a full lane group: the squared-Euclidean check then rides on the
    # row norms, the other costs on the plain sum; both must name the tensor.
    x = torch.randn(16, 6, 3, generator=gen)
    y = torch.randn(16, 5, 3, generator=gen)
    (x if where == "x" else y)[15, 4, 2] = bad
    with pytest.raises(ValueError, match=f"{where} contains (NaN|Inf)"):
        vtalign.soft_dtw(x, y, cost=cost)


def test_overflowing_costs_are_refused_not_called_non_finite(gen):
    # |x|² overflows float32 although every element is finite: the cost cannot be
    # represented, which is what the error says (not "contains NaN/Inf"); float64
    # features of the same values are computed, and the cosine cost is scale-free.
    x = torch.randn(16, 6, 3, generator=gen)
    y = torch.randn(16, 5, 3, generator=gen)
    x[3, 1, 0] = 3e19
    with pytest.raises(ValueError, match="too large for soft-DTW in torch.float32.*float64"):
        vtalign.soft_dtw(x, y)
    v = vtalign.soft_dtw(x.double(), y.double())
    assert torch.isfinite(v).all()
    torch.testing.assert_close(vtalign.soft_dtw(x, y, cost="cosine"),
                               vtalign.soft_dtw(x / 3e19, y, cost="cosine"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1e10, 1e30])
def test_cosine_cost_does_not_change_with_scale(gen, scale):
    x = torch.randn(3, 6, 4, generator=gen)
    y = torch.randn(3, 5, 4, generator=gen)
    torch.testing.assert_close(vtalign.soft_dtw(scale * x, y, cost="cosine"), vtalign.soft_dtw(x, y, cost="cosine"),
                               rtol=1e-5, atol=1e-6)


def test_cost_whose_path_sum_overflows_is_refused():
    C = torch.full((1, 4, 4), 3e38)
    with pytest.raises(ValueError, match="C is too large for soft-DTW"):
        vtalign.soft_dtw_cost(C)
    assert torch.isfinite(vtalign.soft_dtw_cost(C.double())).all()


def test_huge_bandwidth_is_no_band(gen):
    x = torch.randn(2, 5, 3, generator=gen)
    y = torch.randn(2, 6, 3, generator=gen)
    for w in (1e30, 2**40, 2**31 - 1):
        torch.testing.assert_close(vtalign.soft_dtw(x, y, bandwidth=w), vtalign.soft_dtw(x, y))
