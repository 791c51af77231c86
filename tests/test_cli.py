"""The `vtalign` command end to end on small inputs, and its error handling."""
import json
import os

import pytest
import torch

from tests._missing import CLI, run_without
from vtalign.cli import main
from vtalign.data.synthetic import layer_stacks
from vtalign.probe import layerwise_alignment


@pytest.fixture
def feature_files(tmp_path):
    d = layer_stacks(n=120, layers_a=4, layers_b=3, dim=16, best=(2, 1), seed=2)
    pa, pb = tmp_path / "video.pt", tmp_path / "text.pt"
    torch.save({"feats": d.feats_a}, pa)
    torch.save({"feats": d.feats_b}, pb)
    return d, str(pa), str(pb)


def test_probe_writes_report_and_matches_api(feature_files, tmp_path, capsys):
    d, pa, pb = feature_files
    out = tmp_path / "out"
    assert main(["probe", pa, pb, "--k", "5", "--out", str(out), "--metric", "mutual_knn", "cka",
                 "--calibrate", "--permutations", "20", "--bootstrap", "50", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    want = layerwise_alignment(d.feats_a, d.feats_b, k=5)
    assert summary["mutual_knn"]["best"] == [2, 1]
    torch.testing.assert_close(torch.tensor(summary["mutual_knn"]["scores"], dtype=torch.float64), want.scores)
    assert 0 < summary["mutual_knn"]["calibration"]["p_best"] <= 1
    for f in ("summary.md", "heatmap_mutual_knn.png", "heatmap_cka.png"):
        assert (out / f).stat().st_size > 0
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert "best pair" in capsys.readouterr().out.lower()


def test_probe_resumes_from_cached_knn(feature_files, tmp_path, monkeypatch):
    _, pa, pb = feature_files
    out = tmp_path / "out"
    assert main(["probe", pa, pb, "--k", "4", "--out", str(out), "--quiet"]) == 0
    cached = sorted(os.listdir(out / "cache"))
    assert len(cached) == 7  # 4 + 3 layers
    import vtalign.probe.run as run

    def no_search(*a, **k):
        raise AssertionError("a cached layer was searched again")

    monkeypatch.setattr(run, "cosine_knn", no_search)
    assert main(["probe", pa, pb, "--k", "4", "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out / "cache")) == cached


@pytest.mark.parametrize("args,match", [
    (["probe", "missing.pt", "missing.pt"], "no such feature file"),
    (["probe", "{a}", "{a}", "--k", "500"], "k must be"),
    (["probe", "{a}", "{bad}"], "feats"),
    (["probe", "{a}", "{short}"], "N="),
    (["scaling", "--table", "{csv}"], "too few|at least"),
])
def test_user_errors_are_one_line(args, match, feature_files, tmp_path, capsys):
    d, pa, _ = feature_files
    torch.save({"wrong": d.feats_a}, tmp_path / "bad.pt")
    torch.save({"feats": d.feats_b[:50]}, tmp_path / "short.pt")
    (tmp_path / "t.csv").write_text("n_frames,n_captions,score\n1,1,0.1\n2,1,0.2\n")
    subs = dict(a=pa, bad=str(tmp_path / "bad.pt"), short=str(tmp_path / "short.pt"), csv=str(tmp_path / "t.csv"))
    code = main([a.format(**subs) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    import re
    assert re.search(match, err), err


def test_scaling_from_table(tmp_path, capsys):
    import numpy as np

    from vtalign.probe.scaling import scaling_law

    f, c = np.meshgrid([1, 2, 4, 8, 16, 32], [1, 2, 4, 8], indexing="ij")
    s = scaling_law(f.ravel(), c.ravel(), S_inf=0.41, C_f=0.15, alpha=0.75, C_c=0.13, beta=1.30)
    rows = "\n".join(f"{a},{b},{v}" for a, b, v in zip(f.ravel(), c.ravel(), s))
    (tmp_path / "t.csv").write_text("n_frames,n_captions,score\n" + rows + "\n")
    assert main(["scaling", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o")]) == 0
    fit = json.loads((tmp_path / "o" / "scaling_fit.json").read_text())
    assert abs(fit["params"]["S_inf"] - 0.41) < 1e-3 and fit["r2"] > 0.999
    assert (tmp_path / "o" / "scaling.png").stat().st_size > 0


def test_demo_small(tmp_path, capsys):
    assert main(["demo", "--n", "256", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best pair" in out and "R²" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["best"] == summary["planted_best"]
    assert summary["scaling"]["r2"] > 0.8
    for f in ("heatmap.png", "scaling.png", "report.md"):
        assert (tmp_path / "demo" / f).stat().st_size > 0


# Missing optional packages: each CLI path that needs one ends in one stderr line naming the
# pip install and exit 2; plots are the exception (summaries written, one line, exit 0).
@pytest.mark.parametrize("module,args,line", [
    ("safetensors", ["probe", "a.safetensors", "a.safetensors", "--k", "3"],
     'vtalign probe: error: reading .safetensors files needs safetensors: pip install "vtalign[io]"'),
    ("triton", ["probe", "a.pt", "a.pt", "--k", "3", "--backend", "triton"],
     "vtalign probe: error: backend='triton' needs triton: pip install triton"),
    ("vtalign._C", ["probe", "a.pt", "a.pt", "--k", "3", "--backend", "cpp"],
     "vtalign probe: error: backend='cpp' needs the compiled C++ core vtalign._C, which this install lacks: "
     "reinstall with a C++ compiler (pip install -e .) or use backend='torch'"),
])
def test_missing_package_is_one_line_exit_2(module, args, line, tmp_path):
    pytest.importorskip("safetensors")
    from vtalign.probe.features import save_features

    feats = torch.randn(30, 2, 4, generator=torch.Generator().manual_seed(0))
    torch.save({"feats": feats}, tmp_path / "a.pt")
    save_features(tmp_path / "a.safetensors", feats)
    out = run_without([module], CLI, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines() == [line]
    assert "Traceback" not in out.stderr


def test_probe_without_matplotlib_writes_summaries(feature_files, tmp_path):
    d, pa, pb = feature_files
    out = run_without(["matplotlib"], CLI, "probe", pa, pb, "--k", "5", "--out", "o", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines() == ["vtalign probe: plots skipped (summaries written): drawing plots needs "
                                       "matplotlib: pip install matplotlib"]
    assert sorted(os.listdir(tmp_path / "o")) == ["cache", "summary.json", "summary.md"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    want = layerwise_alignment(d.feats_a, d.feats_b, k=5)
    assert summary["mutual_knn"]["best"] == [2, 1]
    torch.testing.assert_close(torch.tensor(summary["mutual_knn"]["scores"], dtype=torch.float64), want.scores)
    md = (tmp_path / "o" / "summary.md").read_text()
    assert md.startswith("# vtalign probe: video.pt x text.pt") and "Best pair: A layer 2 x B layer 1" in md
    assert "Best pair" in out.stdout and "wrote o/summary.json, o/summary.md\n" in out.stdout


@pytest.mark.parametrize("args,written", [
    (["demo", "--n", "128"], ["report.md", "summary.json"]),
    (["scaling", "--n", "128", "--frames", "1", "2", "4", "8", "--captions", "1", "2", "3"], ["scaling_fit.json"]),
])
def test_demo_and_scaling_without_matplotlib(args, written, tmp_path):
    out = run_without(["matplotlib"], CLI, *args, "--out", "o", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines() == [f"vtalign {args[0]}: plots skipped (summaries written): drawing plots "
                                       f"needs matplotlib: pip install matplotlib"]
    assert sorted(os.listdir(tmp_path / "o")) == written
    fit = json.loads((tmp_path / "o" / written[-1]).read_text())
    assert (fit["scaling"] if args[0] == "demo" else fit)["r2"] > 0.8
    if args[0] == "demo":
        assert fit["best"] == fit["planted_best"]
        report = (tmp_path / "o" / "report.md").read_text()
        assert "## Scaling law" in report and "Plots skipped" in report and ".png" not in report


@pytest.mark.parametrize("args,message", [
    (["--device", "bogus"], "--device"),
    (["--device", "cuda"], "no CUDA device"),
    (["--backend", "triton"], "--device cuda"),
])
def test_probe_device_mistakes_are_one_line(feature_files, tmp_path, capsys, args, message):
    if torch.cuda.is_available() and args == ["--device", "cuda"]:
        pytest.skip("this machine has a CUDA device")
    _, pa, pb = feature_files
    assert main(["probe", pa, pb, "--k", "4", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_probe_device_cpu_equals_default(feature_files, tmp_path):
    _, pa, pb = feature_files
    assert main(["probe", pa, pb, "--k", "4", "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert main(["probe", pa, pb, "--k", "4", "--quiet", "--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["mutual_knn"]["scores"] == b["mutual_knn"]["scores"]


# ---------------------------------------------------------------- bad input: one line, exit 2
def _one_line_exit_2(code, capsys, match):
    import re

    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(match, err), err
    return err


@pytest.mark.parametrize("text,match", [
    ("", r"--table: .*t.csv is empty; it needs a header row \(n_frames, n_captions, score\)"),
    ("n_frames,n_captions,score\n", "has a header row but no data rows"),
    ("n_frames,n_captions,score\n1,1,0.1\n2,1,abc\n4,2,0.3\n", r"row 2 \(line 3\), column 'score': 'abc' is not"),
    ("n_frames,n_captions,score\n1,1,0.1\n2,1,inf\n", r"row 2 \(line 3\), column 'score': 'inf' is not a finite"),
    ("n_frames;n_captions;score\n1;1;0.1\n", "needs the columns n_frames, n_captions, score"),
])
def test_scaling_table_mistakes(text, match, tmp_path, capsys):
    (tmp_path / "t.csv").write_text(text)
    _one_line_exit_2(main(["scaling", "--table", str(tmp_path / "t.csv"), "--quiet"]), capsys, match)


# every numeric option of every command, out of range or not a number: argparse says which and why
NUMERIC_MISTAKES = [
    (["demo", "--n", "-5"], "argument --n: must be >= 3, got -5"),
    (["demo", "--n", "0"], "argument --n: must be >= 3, got 0"),
    (["demo", "--k", "0"], "argument --k: must be >= 1, got 0"),
    (["demo", "--seed", "-1"], r"argument --seed: must be in \[0, 2\*\*63 - 1\], got -1"),
    (["demo", "--seed", "1.5"], "argument --seed: must be an integer, got '1.5'"),
    (["demo", "--n", "12", "--k", "11"], r"--k must be in \[1, --n - 2\] = \[1, 10\]"),
    (["probe", "a.pt", "b.pt", "--k", "0"], "argument --k: must be >= 1, got 0"),
    (["probe", "a.pt", "b.pt", "--k", "ten"], "argument --k: must be an integer, got 'ten'"),
    (["probe", "a.pt", "b.pt", "--permutations", "1"], "argument --permutations: must be >= 2, got 1"),
    (["probe", "a.pt", "b.pt", "--bootstrap", "-3"], "argument --bootstrap: must be >= 2, got -3"),
    (["probe", "a.pt", "b.pt", "--seed", str(2 ** 63)], "argument --seed: must be in"),
    (["scaling", "--frames", "0", "1", "2"], "argument --frames: must be >= 1, got 0"),
    (["scaling", "--captions", "1", "x"], "argument --captions: must be an integer, got 'x'"),
    (["scaling", "--n", "1"], "argument --n: must be >= 2, got 1"),
    (["scaling", "--k", "-2"], "argument --k: must be >= 1, got -2"),
    (["scaling", "--seed", "-9"], "argument --seed: must be in"),
    (["scaling", "--n", "16", "--k", "16"], r"--k must be in \[1, --n - 1\] = \[1, 15\], got 16"),
    (["scaling", "--frames", "1", "2", "64"], "--frames: the synthetic set has at most 32, got 64"),
    (["scaling", "--captions", "1", "1", "2"], r"--captions: the scaling law needs at least 3 distinct values"),
    (["selftest", "--seed", "-1"], "argument --seed: must be in"),
]


@pytest.mark.parametrize("args,match", NUMERIC_MISTAKES)
def test_numeric_options_are_range_checked(args, match, tmp_path, capsys, monkeypatch):
    import functools

    import vtalign.data.synthetic as synthetic

    @functools.wraps(synthetic.video_text_set)  # its signature stays readable
    def no_data(*a, **k):
        raise AssertionError("data generated before the options were checked")

    monkeypatch.setattr(synthetic, "video_text_set", no_data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:  # argparse's own exit, or main's return value
        raise SystemExit(main(args))
    _one_line_exit_2(exc.value.code, capsys, match)
    assert os.listdir(tmp_path) == []  # nothing written (demo's runs/demo included)


def _numeric_actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _numeric_actions(sub)
        elif action.type is not None:
            yield parser.prog, action


def test_no_numeric_option_without_a_range():
    from vtalign._train_cli import training_parser
    from vtalign.cli import build_parser

    parsers = [build_parser(), training_parser("t", "d", data="x", steps=1, batch_size=2, n_train=4, n_test=10)]
    seen = [(prog, a) for p in parsers for prog, a in _numeric_actions(p)]
    # the walk reaches every command that has numeric options (so the checks below cannot pass empty)
    progs = {prog for prog, _ in seen}
    assert {"vtalign probe", "vtalign scaling", "vtalign demo", "vtalign selftest", "vtalign extract video",
            "vtalign extract text", "vtalign sweep", "t"} <= progs, progs
    for prog, a in seen:
        assert a.type not in (int, float), f"{prog} {a.option_strings}: type={a.type.__name__} has no range"
        # smax_arg: a positive finite number, or the words auto / none
        assert a.type.__qualname__.split(".")[0] in ("int_in", "float_in", "smax_arg"), (prog, a.option_strings)


@pytest.mark.parametrize("args,match", [
    (["--synthetic", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["--synthetic", "--batch-size", "1"], "argument --batch-size: must be >= 2, got 1"),
    (["--synthetic", "--n-test", "3"], "argument --n-test: must be >= 10, got 3"),
    (["--synthetic", "--threads", "-1"], "argument --threads: must be >= 1, got -1"),
    (["--synthetic", "--seed", "x"], "argument --seed: must be an integer, got 'x'"),
    (["--synthetic", "--json", "."], "--json: '.' is a folder; give a file name"),
])
@pytest.mark.parametrize("module", ["vtalign.mova.train", "vtalign.twins.train"])
def test_training_cli_mistakes_are_one_line(module, args, match, capsys):
    import importlib

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exc:
        mod.main(args)
    _one_line_exit_2(exc.value.code, capsys, match)


def test_float_in_refuses_non_finite_and_out_of_range():
    import argparse

    from vtalign.cli import float_in, non_negative_float

    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number, got 'nan'"):
        non_negative_float("nan")
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 0, got -1"):
        non_negative_float("-1")
    with pytest.raises(argparse.ArgumentTypeError, match="must be < 1, got 1"):
        float_in(0, 1, hi_open=True)("1")
    assert float_in(0, 1, lo_open=True)("0.5") == 0.5


# ---------------------------------------------------------------- paths: every OSError is one line
@pytest.fixture
def paths(feature_files, tmp_path):
    _, pa, pb = feature_files
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.pt").mkdir()
    (tmp_path / "dir.csv").mkdir()
    return dict(a=pa, b=pb, file=str(tmp_path / "file"), below=str(tmp_path / "file" / "sub"),
                dirpt=str(tmp_path / "dir.pt"), dircsv=str(tmp_path / "dir.csv"), tmp=str(tmp_path))


PATH_MISTAKES = [
    (["probe", "{a}", "{b}", "--k", "3", "--out", "{file}"], "--out: '.*file' is a file, not a folder"),
    (["probe", "{a}", "{b}", "--k", "3", "--out", "{below}"], "--out: '.*sub' lies below '.*file', which is a file"),
    (["probe", "{dirpt}", "{b}", "--k", "3"], "dir.pt is a folder, not a feature file"),
    (["probe", "{a}", "{tmp}/missing.pt", "--k", "3"], "no such feature file: .*missing.pt"),
    (["scaling", "--table", "{dircsv}"], "--table: .*dir.csv is a folder, not a CSV file"),
    (["scaling", "--table", "{tmp}/missing.csv"], "--table: no such file: .*missing.csv"),
    (["scaling", "--out", "{file}", "--n", "16", "--k", "2"], "--out: '.*file' is a file, not a folder"),
    (["demo", "--out", "{below}", "--n", "16", "--k", "2"], "--out: '.*sub' lies below '.*file', which is a file"),
    (["selftest", "--out", "{tmp}"], "--out: '.*' is a folder; give a file name"),
    (["selftest", "--out", "{below}/t.md"], "--out: '.*sub' lies below '.*file', which is a file"),
    (["selftest", "--device", "bogus"], "--device: 'bogus' is not a device"),
]


@pytest.mark.parametrize("args,match", PATH_MISTAKES)
def test_path_mistakes_are_one_line_before_any_work(args, match, paths, capsys, monkeypatch):
    import functools

    import vtalign.data.synthetic as synthetic
    import vtalign.probe.run as run
    import vtalign.selftest as selftest

    for mod, name in ((run, "cosine_knn"), (synthetic, "video_text_set"), (selftest, "run_selftest")):
        @functools.wraps(getattr(mod, name))
        def no_work(*a, **k):
            raise AssertionError("work started before the paths were checked")

        monkeypatch.setattr(mod, name, no_work)
    _one_line_exit_2(main([a.format(**paths) for a in args]), capsys, match)


def test_os_errors_name_the_option_whose_path_they_concern(paths, capsys, monkeypatch):
    import errno

    import vtalign.probe.features as features

    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(features.torch, "load", denied)
    err = _one_line_exit_2(main(["probe", paths["a"], paths["b"], "--k", "3", "--quiet"]), capsys,
                           "Permission denied")
    assert err == f"vtalign probe: error: a: {paths['a']}: Permission denied\n"


def test_a_full_disk_is_one_line(paths, capsys, monkeypatch):
    import errno

    import vtalign._atomic as atomic

    real = atomic.atomic_write

    def full(path, write):
        def fail(tmp):
            raise OSError(errno.ENOSPC, "No space left on device", tmp)
        return real(path, fail)

    monkeypatch.setattr(atomic, "atomic_write", full)
    import vtalign.probe.run as run
    monkeypatch.setattr(run, "atomic_write", full)
    out = os.path.join(paths["tmp"], "o")
    _one_line_exit_2(main(["probe", paths["a"], paths["b"], "--k", "3", "--out", out, "--quiet"]), capsys,
                     r"^vtalign probe: error: --out: .*/o/cache/\.knn-.*\.pt\.tmp: No space left on device$")
    assert [f for _, _, fs in os.walk(out) for f in fs] == []  # no temporary file left behind


def test_unwritable_out_is_refused_before_any_work(paths, capsys, monkeypatch):
    import vtalign._atomic as atomic

    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False)
    _one_line_exit_2(main(["probe", paths["a"], paths["b"], "--k", "3", "--out", os.path.join(paths["tmp"], "new")]),
                     capsys, "--out: '.*new': permission denied: cannot write in '.*', its nearest existing folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads and writes everything")
def test_real_permission_errors_are_one_line(paths, tmp_path):
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        out = subprocess.run([sys.executable, "-m", "vtalign.cli", "probe", paths["a"], paths["b"], "--k", "3",
                              "--quiet", "--out", str(locked / "o")], capture_output=True, text=True)
    finally:
        os.chmod(locked, 0o700)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
    assert "permission denied" in out.stderr.lower()


@pytest.mark.parametrize("args", [
    ["probe", "{a}", "{b}", "--out", "{file}"],
    ["scaling", "--table", "{dircsv}"],
    ["demo", "--n", "-5"],
])
def test_mistakes_in_a_real_process_show_no_traceback(args, paths):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vtalign.cli", *[a.format(**paths) for a in args]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


# ---------------------------------------------------------------- a damaged cache heals itself
def test_corrupt_cache_entry_is_recomputed_by_the_next_run(feature_files, tmp_path, capsys):
    _, pa, pb = feature_files
    out = tmp_path / "out"
    args = ["probe", pa, pb, "--k", "4", "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    cache = sorted((out / "cache").iterdir())
    cache[2].write_bytes(cache[2].read_bytes()[:40])  # an interrupted copy, a full disk, ...
    assert main(args) == 0  # before: every rerun failed until the entry was deleted by hand
    again = capsys.readouterr()
    assert len(again.err.splitlines()) == 1 and "Traceback" not in again.err
    assert again.err.startswith(f"vtalign: cache entry {cache[2]} was unreadable (it does not load: ")
    assert again.err.endswith("); recomputing it\n")
    assert json.loads((out / "summary.json").read_text()) == summary and again.out == first.out
    assert main(args) == 0
    assert capsys.readouterr().err == ""  # rewritten: the third run reads it back
    assert sorted((out / "cache").iterdir()) == cache
