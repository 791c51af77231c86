"""`vtalign sweep` with several models per side: a leaderboard in every cell, a fit per
model pair, the cell checkpoint, and the calibrated grid of a one-pair sweep."""
import json
import math
import os

import pytest
import torch

import vtalign.probe.file_sweep as fsw
import vtalign.probe.sweep_cells as cells
from vtalign.cli import main
from vtalign.probe.alignment import layerwise_alignment
from vtalign.probe.aristotelian import calibrated_alignment
from vtalign.probe.extract_store import feature_file_name
from vtalign.probe.features import load_features, save_features
from vtalign.probe.file_sweep import axis_models, sweep_files
from vtalign.probe.sweep_report import write_sweep_report

N, K, PERMS = 40, 4, 12
# per model: its counts and layer count; "vid-b" lacks 4 frames, so it sits out that row of cells
VIDEO = {"vid-a": ([1, 2, 4], 2), "vid-b": ([1, 2], 3)}
TEXT = {"txt-a": ([1, 2, 3], 3), "txt-b": ([1, 3], 2)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    vdir, tdir = root / "video", root / "text"
    vdir.mkdir()
    tdir.mkdir()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(N, 3, generator=g)
    for folder, axis, models in ((vdir, "frames", VIDEO), (tdir, "captions", TEXT)):
        for m, (counts, layers) in models.items():
            for c in counts:  # more frames / captions: more of the shared latent z
                w = torch.randn(3, layers, 6, generator=g)
                x = torch.einsum("nz,zld->nld", z, w) * c + 2 * torch.randn(N, layers, 6, generator=g)
                save_features(str(folder / feature_file_name(m, "avg", axis, c)), x)
    return dict(root=root, video=str(vdir), text=str(tdir))


def _path(files, side, model, count):
    axis = "frames" if side == "video" else "captions"
    return os.path.join(files[side], feature_file_name(model, "avg", axis, count))


def test_every_cell_is_a_leaderboard_of_the_models_present(files):
    res = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, seed=5, progress=False)
    assert list(res.video_models) == ["vid-a", "vid-b"] and list(res.text_models) == ["txt-a", "txt-b"]
    assert res.frames == [1, 2, 4] and res.captions == [1, 2, 3]
    # one search per layer of every file, however many cells and pairs
    assert res.searches == sum(len(c) * L for c, L in (*VIDEO.values(), *TEXT.values()))
    for (f, c), board in res.boards.items():
        present_v = [m for m, (counts, _) in VIDEO.items() if f in counts]
        present_t = [m for m, (counts, _) in TEXT.items() if c in counts]
        assert board.models_a == present_v and board.models_b == present_t
        assert set(board.pairs) == {(a, b) for a in present_v for b in present_t}
        for (a, b), p in board.pairs.items():
            va, tb = load_features(_path(files, "video", a, f)), load_features(_path(files, "text", b, c))
            # the raw scores are the pair's own layerwise alignment; the calibration is the one-pair
            # calibration with the same seed (every cell and pair sees the same permutations)
            r = layerwise_alignment(va, tb, k=K)
            one = calibrated_alignment(va, tb, "mutual_knn", K, n_permutations=PERMS, seed=5)
            assert p.best == r.best and p.raw == r.best_score
            assert (p.calibrated, p.p_value, p.tau) == (one.calibrated, one.p_value, one.tau)
    with pytest.raises(ValueError, match="4 model pairs; pick one from .pairs"):
        res.sweep  # noqa: B018 -- the one-pair shortcut refuses a many-pair sweep


def test_each_model_pair_has_its_own_grid_and_fit(files):
    res = sweep_files([files["video"]], [files["text"]], k=K, permutations=0, progress=False)
    for (a, b), pair in res.pairs.items():
        cells = [(f, c) for f in VIDEO[a][0] for c in TEXT[b][0]]
        assert list(zip(pair.sweep.n_frames.tolist(), pair.sweep.n_captions.tolist())) == cells
        assert pair.sweep.scores.tolist() == [res.boards[fc].pairs[(a, b)].raw for fc in cells]
        assert all(math.isnan(x) for x in pair.calibrated)  # no permutations: raw only
        if len(cells) < 6:  # too few cells for the 5-parameter law: said, not fitted
            assert pair.fit is None and "need at least 6 points, got 4" in pair.fit_skipped
        elif len(cells) == 9:
            assert pair.fit is not None and pair.fit.n_points == 9


def test_one_pair_sweep_reports_a_calibrated_grid(files, tmp_path):
    vfiles = [_path(files, "video", "vid-a", f) for f in (1, 2, 4)]
    tfiles = [_path(files, "text", "txt-a", c) for c in (1, 2, 3)]
    res = sweep_files(vfiles, tfiles, k=K, permutations=PERMS, seed=2, progress=False, out_dir=str(tmp_path))
    i = 0
    for f in (1, 2, 4):
        for c in (1, 2, 3):
            va, tb = load_features(vfiles[[1, 2, 4].index(f)]), load_features(tfiles[c - 1])
            assert torch.equal(res.sweep.layer_scores[i], layerwise_alignment(va, tb, k=K).scores)
            one = calibrated_alignment(va, tb, "mutual_knn", K, n_permutations=PERMS, seed=2)
            assert res.only_pair().calibrated[i] == one.calibrated and res.only_pair().p_values[i] == one.p_value
            i += 1
    write_sweep_report(res, str(tmp_path))
    report = json.load(open(tmp_path / "sweep.json"))
    assert report["calibration"]["permutations"] == PERMS and report["video_model"] == "vid-a"
    assert [c["p_value"] for c in report["cells"]] == res.only_pair().p_values.tolist()
    assert "Calibrated score per cell" in open(tmp_path / "sweep.md").read()


def test_an_interrupted_sweep_resumes_from_its_checkpoint(files, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    first = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, out_dir=out, progress=False)
    path = os.path.join(out, "cache", "sweep-cells.json")
    assert os.path.exists(path)
    real, columns = cells._column, []

    def counting(rows, c, *a, **kw):
        columns.append(c)
        return real(rows, c, *a, **kw)

    monkeypatch.setattr(cells, "_column", counting)
    again = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, out_dir=out, progress=False)
    assert (again.searches, again.cached) == (0, first.searches) and columns == []  # nothing computed again
    for fc, board in first.boards.items():
        assert again.boards[fc].pairs == board.pairs
    # other options: the checkpoint is not theirs, every column is computed
    sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, seed=9, out_dir=out, progress=False)
    assert columns == [1, 2, 3]
    # a checkpoint cut short: its finished cells are kept, the rest is computed, to the same result
    full = json.load(open(path))
    json.dump(dict(full, cells=[c for c in full["cells"] if c["n_captions"] == 1]), open(path, "w"))
    columns.clear()
    resumed = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, seed=9, out_dir=out,
                          progress=False)
    assert columns == [2, 3] and json.load(open(path)) == full
    assert {fc: b.pairs for fc, b in resumed.boards.items()} == {
        fc: b.pairs for fc, b in sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, seed=9,
                                             progress=False).boards.items()}
    open(path, "w").write("{not json")  # a damaged checkpoint is recomputed, not trusted
    columns.clear()
    sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, seed=9, out_dir=out, progress=False)
    assert columns == [1, 2, 3]


def test_row_groups_share_one_index_within_the_budget(files, monkeypatch):
    """Frame counts are indexed together up to INDEX_ENTRIES; a smaller budget splits them
    into more groups (one pass per text file and group) with the same results."""
    whole = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, progress=False)
    built = []
    real = cells.OverlapIndex

    def index(lists):
        built.append(len(lists))
        return real(lists)

    monkeypatch.setattr(cells, "OverlapIndex", index)
    monkeypatch.setattr(cells, "INDEX_ENTRIES", 2 * 3 * N * K)  # vid-a + vid-b at one frame count: 5 layers
    split = sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, progress=False)
    assert built == [2, 2, 1]  # one group per frame count: {1}, {2}, {4} (vid-b has no 4)
    assert {fc: b.pairs for fc, b in split.boards.items()} == {fc: b.pairs for fc, b in whole.boards.items()}
    built.clear()
    monkeypatch.setattr(cells, "INDEX_ENTRIES", 1 << 24)
    sweep_files([files["video"]], [files["text"]], k=K, permutations=PERMS, progress=False)
    assert built == [5]  # every video file in one index


def test_axis_models_names_and_refusals(files, tmp_path):
    both = tmp_path / "pools"
    both.mkdir()
    for pool in ("avg", "cls"):
        save_features(str(both / feature_file_name("vid", pool, "frames", 1)), torch.randn(N, 1, 4))
    assert list(axis_models([str(both)], "frames", "video files")) == ["vid_pool-avg", "vid_pool-cls"]
    dup = tmp_path / "dup"
    dup.mkdir()
    save_features(str(dup / feature_file_name("vid", "avg", "frames", 1)), torch.randn(N, 1, 4))
    with pytest.raises(ValueError, match=r"two files of vid \(pool avg\) for 1 frames"):
        axis_models([str(both), str(dup)], "frames", "video files")
    short = tmp_path / "short"
    short.mkdir()
    save_features(str(short / feature_file_name("txt-c", "avg", "captions", 1)), torch.randn(N - 1, 2, 4))
    with pytest.raises(ValueError, match=f"N={N - 1} samples"):
        sweep_files([files["video"]], [files["text"], str(short)], k=K, progress=False)
    with pytest.raises(ValueError, match="n_permutations must be"):
        sweep_files([files["video"]], [files["text"]], k=K, permutations=-1, progress=False)


def test_cli_sweep_of_several_models(files, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sweep", files["video"], "--text", files["text"], "--k", str(K), "--permutations", str(PERMS),
                 "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Leaderboard at 4 frames, 3 captions" in text and "Every model pair: scaling law" in text
    report = json.load(open(out / "sweep.json"))
    assert len(report["pairs"]) == 4 and len(report["leaderboards"]) == 9
    assert report["calibration"] == dict(permutations=PERMS, alpha=0.05, smax=1.0, agg="max", seed=0)
    top = next(b for b in report["leaderboards"] if (b["n_frames"], b["n_captions"]) == (4, 3))
    # vid-b has no 4-frame file: that cell ranks vid-a against both text models, best calibrated first
    assert sorted(map(tuple, top["ranking"])) == [("vid-a", "txt-a"), ("vid-a", "txt-b")]
    cal = {(p["video_model"], p["text_model"]): c["calibrated"] for p in report["pairs"] for c in p["cells"]
           if (c["n_frames"], c["n_captions"]) == (4, 3)}
    assert [cal[tuple(r)] for r in top["ranking"]] == sorted(cal.values(), reverse=True)
    cells = open(out / "leaderboards.md").read()
    assert cells.count("\n## ") == 9 and "## 4 frames, 3 captions" in cells
    from vtalign.probe.report import plots_unavailable
    if plots_unavailable() is None:
        assert (out / "leaderboard.png").exists()
    with pytest.raises(SystemExit) as exc:  # argparse's one-line refusal
        main(["sweep", files["video"], "--text", files["text"], "--permutations", "-1"])
    assert exc.value.code == 2 and "argument --permutations: must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("metric", ["cycle_knn", "lcs_knn"])
def test_other_knn_metrics_calibrate_from_the_lists_alone(files, metric):
    res = sweep_files([files["video"]], [files["text"]], metric=metric, k=K, permutations=PERMS, seed=1,
                      progress=False)
    p = res.boards[(2, 3)].pairs[("vid-b", "txt-b")]
    va, tb = load_features(_path(files, "video", "vid-b", 2)), load_features(_path(files, "text", "txt-b", 3))
    one = calibrated_alignment(va, tb, metric, K, n_permutations=PERMS, seed=1)
    assert (p.raw, p.best, p.p_value, p.tau, p.calibrated) == (one.scores.max().item(), one.best, one.p_value,
                                                               one.tau, one.calibrated)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc/self/fd (Linux)")
def test_the_sweep_holds_one_file_open_at_a_time(files, monkeypatch, tmp_path):
    """Many models make more files than a process may keep open: each file is opened for
    its check and for its search, and closed before the next (`.npy` files hold a handle
    while open)."""
    import numpy as np

    for side in ("video", "text"):
        (tmp_path / side).mkdir()
        for name in os.listdir(files[side]):
            x = load_features(os.path.join(files[side], name))
            np.save(tmp_path / side / name.replace(".pt", ".npy"), x.numpy())
    real, open_fds = fsw.cached_layer_lists, []

    def counting(*a, **kw):
        open_fds.append(len(os.listdir("/proc/self/fd")))
        return real(*a, **kw)

    monkeypatch.setattr(fsw, "cached_layer_lists", counting)
    sweep_files([str(tmp_path / "video")], [str(tmp_path / "text")], k=K, permutations=0, progress=False)
    assert len(open_fds) == 10 and max(open_fds) == min(open_fds)  # no handle piles up from file to file


def test_cli_mistakes_of_a_many_model_sweep_are_one_line(files, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    save_features(str(bad / feature_file_name("vid-a", "avg", "frames", 8)), torch.randn(N, 5, 6))
    assert main(["sweep", files["video"], str(bad), "--text", files["text"], "--k", str(K)]) == 2
    err = capsys.readouterr().err
    assert "has 5 layers, the other vid-a files 2" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["sweep", files["video"], "--text", files["text"], "--agg", "median"])
    assert "argument --agg: invalid choice: 'median'" in capsys.readouterr().err
