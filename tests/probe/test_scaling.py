"""Scaling-law fit: recovers known parameters (the published VideoMAEv2 and
DINOv2 fits of Dynamic Reflections) from exact and noisy synthetic scores."""
import numpy as np
import pytest

from vtalign.probe.scaling import PARAMS, fit_scaling_law, scaling_law

VIDEOMAE = dict(S_inf=0.41, C_f=0.15, alpha=0.75, C_c=0.13, beta=1.30)
DINOV2 = dict(S_inf=0.37, C_f=0.05, alpha=1.76, C_c=0.13, beta=1.40)


def _grid(frames=(1, 2, 4, 8, 16, 32), captions=(1, 2, 3, 4, 5, 6, 8, 10)):
    nf, nc = np.meshgrid(np.array(frames, float), np.array(captions, float))
    return nf.ravel(), nc.ravel()


@pytest.mark.parametrize("true", [VIDEOMAE, DINOV2])
def test_exact_scores_recover_parameters(true):
    nf, nc = _grid()
    fit = fit_scaling_law(nf, nc, scaling_law(nf, nc, **true))
    for k in PARAMS:
        assert fit.params[k] == pytest.approx(true[k], abs=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.at_bound == []


@pytest.mark.parametrize("seed", range(4))
def test_noisy_scores_recover_videomae_fit(seed):
    nf, nc = _grid()
    y = scaling_law(nf, nc, **VIDEOMAE) + np.random.default_rng(seed).normal(0, 0.002, nf.size)
    fit = fit_scaling_law(nf, nc, y)
    p = fit.params
    assert abs(p["S_inf"] - VIDEOMAE["S_inf"]) < 0.01
    assert abs(p["alpha"] / VIDEOMAE["alpha"] - 1) < 0.10
    assert abs(p["beta"] / VIDEOMAE["beta"] - 1) < 0.10
    # R² by its definition, and errors that describe the actual misfit
    resid = y - fit.predict(nf, nc)
    assert fit.r2 == pytest.approx(1 - np.sum(resid ** 2) / np.sum((y - y.mean()) ** 2), rel=1e-12)
    for k in PARAMS:
        assert 0 < fit.stderr[k] < 0.1
        assert abs(p[k] - VIDEOMAE[k]) < 5 * fit.stderr[k]


def test_predict_extrapolates_and_broadcasts():
    nf, nc = _grid()
    fit = fit_scaling_law(nf, nc, scaling_law(nf, nc, **VIDEOMAE))
    far = fit.predict(np.array([64, 1e6]), 1e6)
    np.testing.assert_allclose(far, scaling_law(np.array([64, 1e6]), 1e6, **VIDEOMAE), atol=1e-6)
    assert far[1] == pytest.approx(VIDEOMAE["S_inf"], abs=1e-4)  # the asymptote
    assert fit.predict([[1], [2]], [1, 2, 3]).shape == (2, 3)
    d = fit.to_dict()
    assert set(d["params"]) == set(PARAMS) and d["n_points"] == nf.size
    with pytest.raises(ValueError, match="n_frames must be finite and > 0"):
        fit.predict(0, 1)


def test_bad_tables():
    nf, nc = _grid()
    y = scaling_law(nf, nc, **VIDEOMAE)
    with pytest.raises(ValueError, match="at least 6 points"):
        fit_scaling_law(nf[:5], nc[:5], y[:5])
    with pytest.raises(ValueError, match="equal lengths"):
        fit_scaling_law(nf, nc[:-1], y)
    with pytest.raises(ValueError, match="degenerate grid: n_captions"):
        two = np.where(nc > 2, 2, nc)
        fit_scaling_law(nf, two, scaling_law(nf, two, **VIDEOMAE))
    with pytest.raises(ValueError, match="degenerate grid: n_frames"):
        fit_scaling_law(np.full(nf.size, 4.0), nc, y)
    with pytest.raises(ValueError, match="n_frames must all be > 0"):
        fit_scaling_law(nf - 1, nc, y)
    with pytest.raises(ValueError, match="scores contains NaN"):
        fit_scaling_law(nf, nc, np.where(nf == 2, np.nan, y))
    with pytest.raises(ValueError, match="all equal"):
        fit_scaling_law(nf, nc, np.full(nf.size, 0.3))
    with pytest.raises(ValueError, match="must be 1-D"):
        fit_scaling_law(nf.reshape(6, -1), nc.reshape(6, -1), y.reshape(6, -1))


@pytest.mark.parametrize("case", ["videomae", "flat_captions", "noise_only"])
def test_the_fit_is_at_least_as_good_as_a_dense_exponent_search(case):
    """The reference: for every (alpha, beta) of a dense grid the best linear part (C >= 0,
    exact), i.e. the smallest SS_res the law can reach there. The fit must reach at
    least that. "flat_captions" is the valley where C_c n_c^-beta with beta -> 0 trades
    against S_inf, along which a joint 5-parameter search used to stop short."""
    from vtalign.probe.scaling import EXPONENT_BOUNDS, _linear_part

    nf, nc = _grid(frames=(1, 2, 4, 8), captions=(1, 2, 3, 4))
    rng = np.random.default_rng(3)
    if case == "videomae":
        y = scaling_law(nf, nc, **VIDEOMAE) + rng.normal(0, 0.002, nf.size)
    elif case == "flat_captions":
        y = scaling_law(nf, nc, S_inf=0.8, C_f=0.007, alpha=2.8, C_c=0.12, beta=0.02) + rng.normal(0, 0.002, nf.size)
    else:
        y = rng.normal(0.5, 0.01, nf.size)
    fit = fit_scaling_law(nf, nc, y)
    ss_fit = float(np.sum((fit.predict(nf, nc) - y) ** 2))
    dense = np.geomspace(*EXPONENT_BOUNDS, 161)
    ss_ref = min(_linear_part(nf, nc, y, a, b)[1] for a in dense for b in dense)
    assert ss_fit <= ss_ref * (1 + 1e-9) + 1e-15
