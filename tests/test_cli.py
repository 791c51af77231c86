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
