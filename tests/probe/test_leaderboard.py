"""Leaderboards: every pair equals the one-pair calibration with the same seed
(per-pair loop), resuming keeps finished pairs, and the files and the CLI."""
import json
import math
import os

import pytest
import torch

from vtalign.probe.aristotelian import calibrated_alignment
from vtalign.probe.leaderboard import leaderboard

N, K = 40, 4


def _models(seed, count, base):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in range(count):
        w = 0.3 + 0.5 * m  # later models see less of the shared signal
        out[f"m{seed}_{m}"] = [base @ torch.randn(6, d, generator=g) + w * torch.randn(N, d, generator=g)
                               for d in (8, 5, 7)[:2 + m % 2]]
    return out


@pytest.fixture(scope="module")
def models():
    base = torch.randn(N, 6, generator=torch.Generator().manual_seed(0))
    return _models(1, 3, base), _models(2, 2, base)


@pytest.mark.parametrize("metric", ["mutual_knn", "cka", "cknna", "lcs_knn"])
def test_every_pair_equals_the_one_pair_calibration(models, metric):
    ma, mb = models
    board = leaderboard(ma, mb, metric, K, n_permutations=15, seed=3, agg="max")
    assert len(board.pairs) == 6
    for (a, b), p in board.pairs.items():
        one = calibrated_alignment(ma[a], mb[b], metric, K, n_permutations=15, seed=3)
        assert p.best == one.best and p.raw == float(one.scores[one.best])
        assert p.p_value == one.p_value and p.tau == pytest.approx(one.tau, abs=1e-12)
        assert p.calibrated == pytest.approx(one.calibrated, abs=1e-12)
    ranked = board.ranked()
    assert [r.calibrated for r in ranked] == sorted((r.calibrated for r in ranked), reverse=True)
    assert board.matrix("raw").shape == (3, 2) and "| rank |" in board.markdown()


def test_raw_only_and_bad_options(models):
    ma, mb = models
    board = leaderboard(ma, mb, "mutual_knn", K, n_permutations=0)
    assert all(math.isnan(p.calibrated) and p.raw > 0 for p in board.pairs.values())
    for kw, match in [(dict(metric="x"), "unknown metric"), (dict(alpha=2.0), "alpha"), (dict(k=0), "k must"),
                      (dict(n_permutations=-1), "n_permutations")]:
        with pytest.raises((ValueError, TypeError), match=match):
            leaderboard(ma, mb, **{"metric": "mutual_knn", "k": K, **kw})
    with pytest.raises(ValueError, match="models_b"):
        leaderboard(ma, {"bad": [torch.randn(N + 1, 3)]}, "mutual_knn", K)


def _write(tmp_path, models, folder):
    from vtalign.probe.features import save_features

    d = tmp_path / folder
    d.mkdir()
    for name, layers in models.items():
        save_features(str(d / f"{name}.pt"), layers)
    return d


def test_cli_leaderboard_files_resume_and_errors(tmp_path, models, capsys):
    from vtalign.cli import main

    ma, mb = models
    da, db = _write(tmp_path, ma, "a"), _write(tmp_path, mb, "b")
    (tmp_path / "b.txt").write_text("# models of B\nb/m2_0.pt\nb/m2_1.pt\n")
    out = tmp_path / "out"
    argv = ["probe", "--a", str(da), "--b", str(tmp_path / "b.txt"), "--k", str(K), "--permutations", "12",
            "--seed", "5", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "| rank | model A |" in capsys.readouterr().out
    report = json.loads((out / "leaderboard.json").read_text())
    assert report["complete"] and len(report["pairs"]) == 6 and (out / "leaderboard.md").exists()
    assert (out / "leaderboard.png").exists()
    board = leaderboard(ma, mb, "mutual_knn", K, n_permutations=12, seed=5)
    for p in report["pairs"]:
        ref = board.pairs[(p["model_a"], p["model_b"])]
        assert p["calibrated"] == pytest.approx(ref.calibrated, abs=1e-12) and p["p_value"] == ref.p_value
    # an interrupted run: two pairs finished (one with a marker value), the rest computed on resume
    report["complete"] = False
    report["pairs"] = report["pairs"][:2]
    report["pairs"][0]["raw"] = -1.0
    (out / "leaderboard.json").write_text(json.dumps(report))
    assert main(argv) == 0
    again = json.loads((out / "leaderboard.json").read_text())
    assert len(again["pairs"]) == 6 and any(p["raw"] == -1.0 for p in again["pairs"])
    # a changed feature file (here: its modification time) is not the run that was interrupted
    report["complete"] = False
    (out / "leaderboard.json").write_text(json.dumps(again))
    for f in da.iterdir():
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert main(argv) == 0
    assert all(p["raw"] != -1.0 for p in json.loads((out / "leaderboard.json").read_text())["pairs"])
    capsys.readouterr()
    # bad combinations: one line, exit 2
    for bad in (["probe", str(da / "m1_0.pt"), str(db / "m2_0.pt"), "--a", str(da), "--b", str(db)],
                ["probe", "--a", str(da)], ["probe", "--a", str(da), "--b", str(db), "--metric", "cka", "mutual_knn"],
                ["probe", "--a", str(tmp_path / "nowhere"), "--b", str(db)]):
        assert main(bad + ["--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vtalign probe: error:")
