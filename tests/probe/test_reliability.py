"""Bad input to the probing API: every argument's type and range is checked, the
error names the argument, and it is raised before anything is computed; degenerate
inputs get a defined answer or a refusal (docs/reliability.md, "Probing API")."""
import math
import os

import numpy as np
import pytest
import torch

import vtalign.probe.alignment as alignment
import vtalign.probe.calibration as calibration
import vtalign.probe.demo as demo
import vtalign.probe.run as run
import vtalign.probe.scaling as scaling
from vtalign.ops import cosine_knn
from vtalign.probe import calibrate, fit_scaling_law, layerwise_alignment, layerwise_alignments, save_features
from vtalign.probe.calibration import bootstrap_indices, bootstrap_scores, calibrate_lists, permutation_null
from vtalign.probe.features import open_features
from vtalign.probe.scaling import read_scaling_table, scaling_law
from vtalign.probe.sweep import scaling_sweep

N = 30


class Computed(Exception):
    """Raised by every computing function while `no_compute` is active."""


@pytest.fixture
def no_compute(monkeypatch):
    """Make every step that computes (kNN searches, list and Gram scores, outlier
    thresholds, permutations, the scaling fit, the demo's data) raise `Computed`,
    so a test sees whether an argument was refused before any of them ran."""
    def boom(*a, **k):
        raise Computed("computation started before the arguments were checked")

    for mod, names in ((alignment, ("all_pair_scores", "outlier_threshold", "_streamed_thresholds", "layer_lists")),
                       (calibration, ("layer_knn", "list_scores", "permutation_null")),
                       (run, ("cosine_knn", "all_pair_scores", "calibrate_lists")),
                       (scaling, ("least_squares", "_linear_part", "_grid_start")),
                       (demo, ("video_text_set",))):
        for name in names:
            monkeypatch.setattr(mod, name, boom)


def _x(n=N, layers=2, d=4, seed=0):
    return torch.randn(n, layers, d, generator=torch.Generator().manual_seed(seed))


NAN = _x()
NAN[3, 1, 2] = float("nan")

# (keyword overrides, exception, message) for layerwise_alignment(x, x, **kwargs)
LAYERWISE_BAD = [
    (dict(metric="svcca"), ValueError, "unknown metric 'svcca'"),
    (dict(metric=3), ValueError, "unknown metric 3"),
    (dict(k=0), ValueError, r"k must be in \[1, inf\], got 0"),
    (dict(k=-1), ValueError, "k must be"),
    (dict(k=1.5), TypeError, "k must be an int, got float 1.5"),
    (dict(k="5"), TypeError, "k must be an int"),
    (dict(k=True), TypeError, "k must be an int, got bool"),
    (dict(k=None), TypeError, "k must be an int"),
    (dict(k=N), ValueError, r"k must be in \[1, N-1\] = \[1, 29\], got 30"),
    (dict(metric="cknna", k=1), ValueError, "k must be >= 2 for cknna"),
    (dict(normalize="yes"), TypeError, "normalize must be True or False"),
    (dict(normalize=1), TypeError, "normalize must be True or False"),
    (dict(concat="no"), TypeError, "concat must be True or False"),
    (dict(outliers="median"), ValueError, "outliers must be one of"),
    (dict(outliers=True), ValueError, "outliers must be one of"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(backend=None), ValueError, "backend must be one of"),
    (dict(max_workspace_bytes=0), ValueError, "max_workspace_bytes must be in"),
    (dict(max_workspace_bytes=1.5), TypeError, "max_workspace_bytes must be an int"),
    (dict(metric="cka", k=0), ValueError, "k must be"),
]


@pytest.mark.parametrize("kwargs,err,match", LAYERWISE_BAD)
def test_layerwise_alignment_refuses_bad_options_before_computing(kwargs, err, match, no_compute):
    with pytest.raises(err, match=match):
        layerwise_alignment(_x(), _x(seed=1), **kwargs)


@pytest.mark.parametrize("a,b,kwargs,err,match", [
    (np.zeros((N, 2, 4)), _x(), {}, TypeError, "feats_a must be a tensor"),
    (_x(), torch.ones(N, 2, 4, dtype=torch.int64), {}, TypeError, "feats_b must have a floating dtype"),
    (torch.empty(0, 2, 4), _x(), {}, ValueError, "feats_a is empty"),
    (torch.randn(N), _x(), {}, ValueError, "feats_a must be 2-D or 3-D"),
    (torch.randn(N, 2, 4, 1), _x(), {}, ValueError, "feats_a must be 2-D or 3-D"),
    (_x(), NAN, {}, ValueError, "feats_b layer 1 contains NaN"),
    (_x() * float("inf"), _x(), {}, ValueError, "feats_a layer 0 contains"),
    ([], _x(), {}, ValueError, "feats_a is an empty list"),
    ([torch.randn(N, 3), torch.randn(N - 1, 3)], _x(), {}, ValueError, "feats_a: layers have different sample"),
    ([torch.randn(N, 3), "x"], _x(), {}, TypeError, r"feats_a\[1\] must be a torch.Tensor"),
    (_x(), _x(n=N + 1), {}, ValueError, "same number of samples, got 30 and 31"),
    (_x(n=3), _x(n=3), dict(metric="unbiased_cka"), ValueError, "N >= 4"),
    (_x(n=1), _x(n=1), dict(metric="cka"), ValueError, "cka need N >= 2"),
    (_x(n=1), _x(n=1), dict(k=1), ValueError, "N >= 2"),
])
def test_layerwise_alignment_refuses_bad_features_before_computing(a, b, kwargs, err, match, no_compute):
    with pytest.raises(err, match=match):
        layerwise_alignment(a, b, **kwargs)


@pytest.mark.parametrize("metrics,match", [("cka", "metrics must be a non-empty list"),
                                           ([], "metrics must be a non-empty list"),
                                           (["cka", "nope"], "unknown metric 'nope'")])
def test_layerwise_alignments_refuses_bad_metric_lists(metrics, match, no_compute):
    with pytest.raises(ValueError, match=match):
        layerwise_alignments(_x(), _x(), metrics)


CALIBRATE_BAD = [
    (dict(metric="cka"), ValueError, "kNN-list metrics"),
    (dict(n_permutations=1), ValueError, "n_permutations must be in"),
    (dict(n_permutations=2.0), TypeError, "n_permutations must be an int"),
    (dict(n_bootstrap=True), TypeError, "n_bootstrap must be an int, got bool"),
    (dict(n_bootstrap="10"), TypeError, "n_bootstrap must be an int"),
    (dict(confidence=0), ValueError, r"confidence must be in \(0, 1\)"),
    (dict(confidence=1.0), ValueError, "confidence must be in"),
    (dict(confidence=float("nan")), ValueError, "confidence must be in"),
    (dict(confidence="0.9"), TypeError, "confidence must be a number"),
    (dict(confidence=True), TypeError, "confidence must be a number"),
    (dict(seed=1.5), TypeError, "seed must be an int, got float 1.5"),
    (dict(seed=True), TypeError, "seed must be an int, got bool"),
    (dict(seed=np.float64(2.0)), TypeError, "seed must be an int"),
    (dict(seed="0"), TypeError, "seed must be an int"),
    (dict(seed=None), TypeError, "seed must be an int"),
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(seed=2 ** 63), ValueError, "seed must be in"),
    (dict(k=N - 1), ValueError, r"k must be in \[1, N-2\] = \[1, 28\] for calibrating mutual_knn"),
    (dict(metric="cycle_knn", k=N - 1), ValueError, r"\[1, N-2\] = \[1, 28\] for calibrating cycle_knn"),
    (dict(metric="lcs_knn", k=N), ValueError, r"k must be in \[1, N-1\] = \[1, 29\]"),
    (dict(k=2.0), TypeError, "k must be an int"),
    (dict(normalize="no"), TypeError, "normalize must be True or False"),
    (dict(concat=None), TypeError, "concat must be True or False"),
    (dict(outliers="all"), ValueError, "outliers must be one of"),
    (dict(backend="cuda"), ValueError, "backend must be one of"),
    (dict(max_workspace_bytes=-5), ValueError, "max_workspace_bytes must be in"),
]


@pytest.mark.parametrize("kwargs,err,match", CALIBRATE_BAD)
def test_calibrate_refuses_bad_arguments_before_computing(kwargs, err, match, no_compute):
    with pytest.raises(err, match=match):
        calibrate(_x(), _x(seed=1), **kwargs)


def test_calibrate_accepts_numpy_integers_as_seed():
    cal = calibrate(_x(), _x(seed=1), k=3, seed=np.int64(4), n_permutations=5, n_bootstrap=5)
    assert cal.seed == 4 and type(cal.seed) is int
    assert torch.equal(cal.null_max, calibrate(_x(), _x(seed=1), k=3, seed=4, n_permutations=5,
                                               n_bootstrap=5).null_max)


def _lists(n=12, k=3, seed=0):
    return cosine_knn(_x(n=n, seed=seed).transpose(0, 1).contiguous(), k)[1]


@pytest.mark.parametrize("call,err,match", [
    (lambda: calibrate_lists(_lists(k=11), _lists(k=11, seed=1)), ValueError, r"\[1, N-2\] = \[1, 10\]"),
    (lambda: calibrate_lists(_lists().float(), _lists()), TypeError, "idx_a must hold int"),
    (lambda: calibrate_lists(_lists(), _lists(), seed=0.5), TypeError, "seed must be an int"),
    (lambda: calibrate_lists(_lists(), _lists(), concat=1), TypeError, "concat must be True or False"),
    (lambda: permutation_null(_lists(), _lists(), n_permutations=0), ValueError, "n_permutations must be in"),
    (lambda: permutation_null(_lists(), _lists(), seed=1.5), TypeError, "seed must be an int"),
    (lambda: permutation_null(_lists(), _lists()[:, :5]), ValueError, "agree on"),
    (lambda: bootstrap_scores(torch.tensor([0.1, float("nan"), 0.3])), ValueError,
     r"per_sample contains NaN \(first at index \[1\]"),
    (lambda: bootstrap_scores(torch.tensor([[0.1, 0.2], [float("inf"), 0.3]])), ValueError,
     r"per_sample contains Inf \(first at index \[1, 0\]"),
    (lambda: bootstrap_scores([0.1, 0.2]), TypeError, "per_sample must be a tensor"),
    (lambda: bootstrap_scores(torch.empty(0)), ValueError, "per_sample must be a non-empty tensor"),
    (lambda: bootstrap_scores(torch.tensor(0.5)), ValueError, "per_sample must be a non-empty tensor"),
    (lambda: bootstrap_scores(torch.ones(3, dtype=torch.complex64)), TypeError, "per_sample must hold real"),
    (lambda: bootstrap_scores(torch.ones(3), 0), ValueError, "n_bootstrap must be in"),
    (lambda: bootstrap_scores(torch.ones(3), seed=1.5), TypeError, "seed must be an int"),
    (lambda: next(bootstrap_indices(0, 5)), ValueError, "n must be in"),
    (lambda: next(bootstrap_indices(5, 5, seed=-3)), ValueError, "seed must be in"),
])
def test_calibration_helpers_refuse_bad_arguments(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_calibrate_at_the_largest_k_is_defined():
    """k = N-2 is the largest k with a spread null for mutual kNN; z and p are finite
    numbers where the null has spread and +-inf or 0 (never NaN) where it has none."""
    a, b = _x(n=12), _x(n=12, seed=1)
    cal = calibrate(a, b, k=10, n_permutations=30, n_bootstrap=20)
    assert not torch.isnan(cal.z_pairs).any() and not math.isnan(cal.z_best)
    # cycle kNN with a large k: every permutation hits for these data, the null has no spread
    cal = calibrate(a, b, "cycle_knn", k=9, n_permutations=30, n_bootstrap=20)
    flat = cal.null_std == 0
    assert flat.any()
    assert not torch.isnan(cal.z_pairs).any()
    assert torch.equal(cal.z_pairs[flat], torch.zeros_like(cal.z_pairs[flat]))  # score equals the constant null
    assert cal.z_best == 0.0 and 0 < cal.p_best <= 1


def test_degenerate_null_gives_infinite_z_not_nan():
    z = calibration._z(torch.tensor([0.5, 0.2, 0.1], dtype=torch.float64),
                       torch.tensor([[0.2, 0.2, 0.1], [0.2, 0.2, 0.3]], dtype=torch.float64))
    assert z[0] == math.inf and z[1] == 0.0 and z[2] == pytest.approx(-0.1 / (2 ** 0.5 * 0.1))


# ------------------------------------------------------------------ scaling law
def _grid(frames=(1, 2, 4, 8), captions=(1, 2, 3, 5)):
    f, c = np.meshgrid(np.array(frames, float), np.array(captions, float), indexing="ij")
    return f.ravel(), c.ravel()


@pytest.mark.parametrize("n", [9, 12, 16])
@pytest.mark.parametrize("value", [0.1, 0.3, 0.7, 1 / 3])
def test_constant_scores_are_refused_at_every_size(n, value):
    # before: some sizes slipped past an exact SS_tot == 0 test (the mean of equal
    # floats is not always that float) and reported R² = 0.5 ... 1 with NaN errors
    nf, nc = _grid()
    with pytest.raises(ValueError, match="scores are all equal"):
        fit_scaling_law(nf[:n], nc[:n], np.full(n, value))


def test_scores_equal_within_rounding_are_refused():
    nf, nc = _grid()
    y = np.full(nf.size, 0.3)
    y[::2] = np.nextafter(0.3, 1.0)
    with pytest.raises(ValueError, match="within rounding"):
        fit_scaling_law(nf, nc, y)


def test_too_few_distinct_points_are_refused():
    f = np.array([1, 2, 4, 1, 2, 4, 1, 2], float)
    c = np.array([1, 2, 3, 1, 2, 3, 1, 2], float)  # 3 distinct points repeated
    with pytest.raises(ValueError, match="3 distinct .n_frames, n_captions. points.*at least 6"):
        fit_scaling_law(f, c, scaling_law(f, c, 0.4, 0.1, 1.0, 0.1, 1.0))


def test_flat_direction_leaves_only_its_parameters_undefined():
    nf, nc = _grid()
    fit = fit_scaling_law(nf, nc, scaling_law(nf, nc, S_inf=0.5, C_f=0.0, alpha=1.0, C_c=0.2, beta=1.2))
    assert fit.at_bound == ["C_f"] and math.isnan(fit.stderr["alpha"])  # C_f = 0 leaves alpha free
    assert all(math.isfinite(fit.stderr[k]) for k in ("S_inf", "C_f", "C_c", "beta"))
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e-6, 1e6, 1e200])
def test_fit_does_not_depend_on_the_scores_scale(scale):
    nf, nc = _grid()
    y = scaling_law(nf, nc, 0.5, 0.1, 1.0, 0.2, 1.2) + np.random.default_rng(0).normal(0, 1e-3, nf.size)
    ref, fit = fit_scaling_law(nf, nc, y), fit_scaling_law(nf, nc, y * scale)
    assert fit.r2 == pytest.approx(ref.r2, rel=1e-9)
    for k in ("S_inf", "C_f", "C_c"):
        assert fit.params[k] / scale == pytest.approx(ref.params[k], rel=1e-6)
        assert fit.stderr[k] / scale == pytest.approx(ref.stderr[k], rel=1e-5)
    for k in ("alpha", "beta"):
        assert fit.params[k] == pytest.approx(ref.params[k], rel=1e-6)


@pytest.mark.parametrize("args,err,match", [
    (([1, 2, float("nan")] * 3, None, None), ValueError, r"n_frames contains NaN or Inf: n_frames\[2\] = nan"),
    ((None, [1, 2, 3] * 2 + [1, float("inf"), 3], None), ValueError, r"n_captions\[7\] = inf"),
    ((None, None, [0.1] * 4 + ["abc"] + [0.2] * 4), TypeError, r"scores\[4\] is str 'abc'"),
    ((None, None, "0.1,0.2"), TypeError, "scores must be a 1-D array of numbers, got str"),
    ((None, None, [0.1] * 8 + [None]), TypeError, r"scores\[8\] is NoneType"),
    ((None, None, [True] * 9), TypeError, "scores must hold numbers, got booleans"),
    ((None, None, [[0.1, 0.2], [0.3]]), TypeError, "scores must be a 1-D array of numbers"),
])
def test_fit_names_the_bad_entry(args, err, match, no_compute):
    f = [1, 2, 4] * 3
    c = [1, 1, 1, 2, 2, 2, 3, 3, 3]
    s = list(np.linspace(0.1, 0.5, 9))
    a = [f, c, s]
    call = [a[i] if v is None else v for i, v in enumerate(args)]
    with pytest.raises(err, match=match):
        fit_scaling_law(*call)


@pytest.mark.parametrize("text,match", [
    ("", r"is empty; it needs a header row \(n_frames, n_captions, score\)"),
    ("\n\n", "is empty"),
    ("n_frames,n_captions,score\n", "has a header row but no data rows"),
    ("frames,captions,score\n1,1,0.1\n", "needs the columns n_frames, n_captions, score; missing n_frames, n_captions"),
    ("n_frames,n_captions,score\n1,1,0.1\n2,1,abc\n", r"row 2 \(line 3\), column 'score': 'abc' is not a number"),
    ("n_frames,n_captions,score\n1,1,0.1\n2,,0.2\n", r"row 2 \(line 3\), column 'n_captions': '' is not a number"),
    ("n_frames,n_captions,score\n1,1,nan\n", r"row 1 \(line 2\), column 'score': 'nan' is not a finite number"),
    ("n_frames,n_captions,score\n1,1,0.1\n\n0,1,0.1\n", r"row 2 \(line 4\), column 'n_frames': '0' must be > 0"),
    ("n_frames,n_captions,score\n1,1,0.1,7\n", r"row 1 \(line 2\) has 4 cells; the header has 3"),
    ("n_frames,n_captions,score,score\n1,1,0.1,0.2\n", "names score more than once"),
])
def test_scaling_table_errors_name_row_column_and_text(text, match, tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_scaling_table(p, name="--table")


def test_scaling_table_reads_extra_columns_bom_and_blank_lines(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("\ufeffmodel, n_captions ,n_frames,score\nx,1,2,0.5\n\ny, 2 ,4, 0.25\n", encoding="utf-8")
    nf, nc, s = read_scaling_table(p)
    assert nf.tolist() == [2, 4] and nc.tolist() == [1, 2] and s.tolist() == [0.5, 0.25]
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a text CSV file"):
        read_scaling_table(tmp_path / "bin.csv")
    with pytest.raises(ValueError, match="is a folder, not a CSV file"):
        read_scaling_table(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_scaling_table(tmp_path / "missing.csv")


# ------------------------------------------------------------------ sweep, demo, files
@pytest.mark.parametrize("kwargs,err,match", [
    (dict(frames=[]), ValueError, "frames must be a non-empty sequence"),
    (dict(frames=[1, 0, 2]), ValueError, r"frames\[1\] must be in"),
    (dict(captions=[1, 2.5]), TypeError, r"captions\[1\] must be an int"),
    (dict(k=0), ValueError, "k must be in"),
    (dict(metric="nope"), ValueError, "unknown metric"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
])
def test_scaling_sweep_checks_before_computing(kwargs, err, match):
    def features(_):
        raise Computed("features computed before the arguments were checked")

    args = dict(frames=[1, 2, 4], captions=[1, 2, 3])
    args.update(kwargs)
    with pytest.raises(err, match=match):
        scaling_sweep(features, features, **args, progress=False)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(n=2), ValueError, "n must be in"),
    (dict(n=64.0), TypeError, "n must be an int"),
    (dict(n=20, k=19), ValueError, r"k must be in \[1, n-2\] = \[1, 18\] for n = 20"),
    (dict(k=0), ValueError, "k must be in"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(permutations=1), ValueError, "permutations must be in"),
    (dict(bootstrap="5"), TypeError, "bootstrap must be an int"),
])
def test_run_demo_checks_before_computing(kwargs, err, match, no_compute, tmp_path, capsys):
    with pytest.raises(err, match=match):
        demo.run_demo(str(tmp_path / "d"), **kwargs)
    assert capsys.readouterr().out == ""  # nothing printed either
    assert not (tmp_path / "d").exists()


def test_run_demo_refuses_an_out_dir_that_is_a_file(no_compute, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="out_dir: .* is a file, not a folder"):
        demo.run_demo(str(tmp_path / "f"), n=64, k=4)
    with pytest.raises(ValueError, match="lies below .*f', which is a file"):
        demo.run_demo(str(tmp_path / "f" / "sub"), n=64, k=4)


@pytest.fixture
def feature_file(tmp_path):
    path = tmp_path / "a.pt"
    torch.save({"feats": _x()}, path)
    return str(path)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(k="3"), TypeError, "k must be an int"),
    (dict(k=N), ValueError, r"k must be in \[1, N-1\] = \[1, 29\]"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(permutations=1), ValueError, "permutations must be in"),
    (dict(bootstrap=0.5), TypeError, "bootstrap must be an int"),
    (dict(calibrate="yes"), TypeError, "calibrate must be True or False"),
    (dict(normalize=0), TypeError, "normalize must be True or False"),
    (dict(metrics="cka"), ValueError, "metrics must be a non-empty list"),
    (dict(metrics=["cka", "svcca"]), ValueError, "unknown metric 'svcca'"),
    (dict(key=""), ValueError, "key must be a non-empty string"),
    (dict(device="bogus"), ValueError, "device: 'bogus' is not a device"),
    (dict(calibrate=True, k=N - 1), ValueError, r"\[1, N-2\] = \[1, 28\] for calibrating mutual_knn"),
])
def test_probe_files_checks_before_computing(kwargs, err, match, feature_file, no_compute):
    with pytest.raises(err, match=match):
        run.probe_files(feature_file, feature_file, progress=False, **kwargs)


def test_probe_files_refuses_an_unusable_out_dir_before_computing(feature_file, tmp_path, no_compute):
    with pytest.raises(ValueError, match="out_dir: .* is a file, not a folder"):
        run.probe_files(feature_file, feature_file, out_dir=feature_file, progress=False)


def test_open_and_save_features_refuse_folders(tmp_path):
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(IsADirectoryError, match="d.pt is a folder, not a feature file"):
        open_features(tmp_path / "d.pt")
    with pytest.raises(ValueError, match="path: .*d.pt' is a folder"):
        save_features(tmp_path / "d.pt", _x())
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        save_features(tmp_path / "e.pt", _x(), key="")
    assert sorted(os.listdir(tmp_path)) == ["d.pt"]


@pytest.mark.parametrize("dtype,code", [(torch.int32, "torch.int32"), (torch.int16, "torch.int16"),
                                        (torch.uint8, "torch.uint8"), (torch.bool, "torch.bool"),
                                        (torch.int64, "torch.int64")])
def test_safetensors_dtype_in_errors_is_the_files_own(dtype, code, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    p = tmp_path / "f.safetensors"
    st.save_file({"feats": torch.ones(4, 2, 3, dtype=dtype)}, str(p))
    with pytest.raises(TypeError, match=f"must hold floating-point features, got dtype {code}$"):
        open_features(p)


def test_float8_features_are_refused_by_name(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    p = tmp_path / "f8.safetensors"
    st.save_file({"feats": torch.ones(4, 2, 3).to(torch.float8_e4m3fn)}, str(p))
    with pytest.raises(TypeError, match="got dtype torch.float8_e4m3fn"):
        open_features(p)


# ------------------------------------------------------------------ kNN cache
def _cached(tmp_path, layers, capsys=None, **kw):
    return run.cached_layer_lists(layers, "fid", 3, normalize=True, options="o", cache_dir=str(tmp_path),
                                  progress=False, **kw)


def _corruptions(path):
    """(name, how to damage the cache entry at path)."""
    def truncate():
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])

    def garbage():
        open(path, "wb").write(b"\x00" * 64)

    def empty():
        open(path, "wb").close()

    def wrong_shape():
        idx = torch.zeros(5, 2, dtype=torch.int64)
        torch.save({"idx": idx, "sha256": run._digest(idx)}, path)

    def wrong_dtype():
        idx = torch.load(path, weights_only=True)["idx"].float()
        torch.save({"idx": idx, "sha256": "0"}, path)

    def out_of_range():
        idx = torch.load(path, weights_only=True)["idx"] + 100
        torch.save({"idx": idx, "sha256": run._digest(idx)}, path)

    def flipped_value():  # loads fine, right shape and range: only the checksum sees it
        d = torch.load(path, weights_only=True)
        d["idx"][0, 0] = (d["idx"][0, 0] + 1) % N
        torch.save(d, path)

    def bare_tensor():
        torch.save(torch.zeros(3), path)

    def pickled_object():  # weights_only=True refuses it: never unpickled
        import pickle

        open(path, "wb").write(pickle.dumps({"idx": os.getcwd}))

    return dict(truncate=truncate, garbage=garbage, empty=empty, wrong_shape=wrong_shape, wrong_dtype=wrong_dtype,
                out_of_range=out_of_range, flipped_value=flipped_value, bare_tensor=bare_tensor,
                pickled_object=pickled_object)


@pytest.mark.parametrize("how", ["truncate", "garbage", "empty", "wrong_shape", "wrong_dtype", "out_of_range",
                                 "flipped_value", "bare_tensor", "pickled_object"])
def test_a_bad_cache_entry_is_reported_recomputed_and_rewritten(how, tmp_path, capsys):
    layers = list(_x().unbind(1))
    want = _cached(tmp_path, layers)
    entries = sorted(os.listdir(tmp_path))
    assert len(entries) == 2
    bad = str(tmp_path / entries[0])
    _corruptions(bad)[how]()
    capsys.readouterr()
    got = _cached(tmp_path, layers)
    assert torch.equal(got, want)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vtalign: cache entry {bad} was unreadable (")
    assert err[0].endswith("); recomputing it")
    # rewritten atomically: the next run reads it silently, no temporary file is left
    assert torch.equal(_cached(tmp_path, layers), want)
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir(tmp_path)) == entries


def test_a_cache_entry_that_is_a_folder_is_reported(tmp_path, capsys):
    layers = list(_x().unbind(1))
    want = _cached(tmp_path, layers)
    bad = tmp_path / sorted(os.listdir(tmp_path))[0]
    bad.unlink()
    bad.mkdir()
    with pytest.raises(IsADirectoryError):  # cannot be replaced: an OSError the CLI reports in one line
        _cached(tmp_path, layers)
    assert "was unreadable" in capsys.readouterr().err
    bad.rmdir()
    assert torch.equal(_cached(tmp_path, layers), want)
