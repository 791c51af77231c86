"""The `vtalign` command end to end on small inputs, and its error handling."""
import json
import os

import pytest
import torch

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
