"""The reusing sweep against the per-cell loop, manifests, and the streamed feature files."""
import json
import os
import zipfile

import pytest
import torch

from vtalign.data.synthetic import video_text_set
from vtalign.probe.alignment import layerwise_alignment
from vtalign.probe.extract_store import feature_file_name, feature_record, parse_feature_name, write_feature_file
from vtalign.probe.features import load_features
from vtalign.probe.manifest import read_manifest
from vtalign.probe.sweep import scaling_sweep

FRAMES, CAPTIONS = [1, 2, 4, 8], [1, 2, 3, 5]


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "edit_distance_knn", "cka"])
def test_reusing_sweep_equals_the_per_cell_computation(metric):
    data = video_text_set(n=96, seed=1)
    V, T = {f: data.video_features(f) for f in FRAMES}, {c: data.text_features(c) for c in CAPTIONS}
    calls = {"v": 0, "t": 0}

    def video(f):
        calls["v"] += 1
        return V[f]

    def text(c):
        calls["t"] += 1
        return T[c]

    s = scaling_sweep(video, text, FRAMES, CAPTIONS, metric=metric, k=7, progress=False, keep_layer_scores=True)
    assert calls == {"v": len(FRAMES), "t": len(CAPTIONS)}  # features (and lists) once per axis value
    i = 0
    for f in FRAMES:
        for c in CAPTIONS:
            r = layerwise_alignment(V[f], T[c], metric=metric, k=7)
            assert torch.equal(s.layer_scores[i], r.scores) and s.best_pairs[i] == r.best
            assert s.scores[i] == r.best_score and (s.n_frames[i], s.n_captions[i]) == (f, c)
            i += 1


def test_sweep_device_and_k_are_checked_before_computing():
    def never(_):
        raise AssertionError("computed before the arguments were checked")

    with pytest.raises(ValueError, match="device: 'gpu0' is not a device"):
        scaling_sweep(never, never, [1], [1], device="gpu0", progress=False)
    data = video_text_set(n=16, seed=0)
    plain = scaling_sweep(data.video_features, data.text_features, [1, 2], [1, 2], k=3, progress=False)
    on_cpu = scaling_sweep(data.video_features, data.text_features, [1, 2], [1, 2], k=3, progress=False,
                           device="cpu")  # the device path: each layer moved for its search, lists back
    assert on_cpu.scores.tolist() == plain.scores.tolist() and on_cpu.best_pairs == plain.best_pairs
    with pytest.raises(ValueError, match=r"k must be in \[1, N-1\] = \[1, 15\]"):
        scaling_sweep(never, data.text_features, [1], [1], k=16, progress=False)  # text comes first


def test_feature_names_round_trip():
    name = feature_file_name("MCG-NJU/videomae-base", "avg", "frames", 16)
    assert name == "MCG-NJU_videomae-base_pool-avg_numframes-16.pt"
    assert parse_feature_name("x/" + name) == dict(model="MCG-NJU_videomae-base", pool="avg", axis="frames", count=16)
    assert parse_feature_name("m_pool-cls_numcaptions-3.safetensors")["count"] == 3
    assert parse_feature_name("features.pt") is None
    with pytest.raises(ValueError, match="format must be one of"):
        feature_file_name("m", "avg", "frames", 1, ".npy")


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_streamed_files_hold_the_parts_in_order(tmp_path, ext):
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(r, 3, 5, generator=g) for r in (4, 4, 2)]
    ids = [f"s{i}" for i in range(10)]
    path = write_feature_file(str(tmp_path / f"m_pool-avg_numframes-2{ext}"), iter(parts), (10, 3, 5), ids,
                              {"model": "m"})
    assert torch.equal(load_features(path), torch.cat(parts))
    got_ids, meta = feature_record(path)
    assert got_ids == ids and meta["model"] == "m"
    if ext == ".pt":
        assert zipfile.ZipFile(path).testzip() is None
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temporary file left


def test_manifests_csv_and_jsonl(tmp_path):
    for v in ("a.mp4", "b.mp4"):
        (tmp_path / v).write_bytes(b"")
    (tmp_path / "m.csv").write_text('id,video,caption_1,caption_2\na,a.mp4,one,two\nb,b.mp4,three,\n')
    s = read_manifest(str(tmp_path / "m.csv"))
    assert [x.id for x in s] == ["a", "b"] and s[1].captions == ("three",)
    assert s[0].video == str(tmp_path / "a.mp4")
    (tmp_path / "j.csv").write_text('id,video,captions\na,a.mp4,"[""x"", ""y""]"\nb,b.mp4,p | q\n')
    assert [x.captions for x in read_manifest(str(tmp_path / "j.csv"))] == [("x", "y"), ("p", "q")]
    lines = [json.dumps(dict(id="a", video="a.mp4", captions=["x"])), json.dumps(dict(id="a", video="b.mp4",
                                                                                     captions=["y"]))]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match="sample id 'a' appears twice"):
        read_manifest(str(tmp_path / "d.jsonl"))
    (tmp_path / "v.jsonl").write_text(json.dumps(dict(id="z", video="missing.mp4", captions=["x"])))
    with pytest.raises(ValueError, match="no such video file"):
        read_manifest(str(tmp_path / "v.jsonl"))
    assert read_manifest(str(tmp_path / "v.jsonl"), need_video=False)[0].captions == ("x",)
    (tmp_path / "bad.csv").write_text("id,captions\na,x\n")
    with pytest.raises(ValueError, match="missing video"):
        read_manifest(str(tmp_path / "bad.csv"))


def test_sweep_refuses_a_file_with_nan_naming_file_and_layer(tmp_path):
    """Each layer is read once, by its search; a NaN still stops the sweep with the file and
    layer named (FeatureFile.layer checks what it reads)."""
    from vtalign.probe.features import save_features
    from vtalign.probe.file_sweep import sweep_files

    g = torch.Generator().manual_seed(0)
    vdir, tdir = tmp_path / "v", tmp_path / "t"
    vdir.mkdir()
    tdir.mkdir()
    for c in (1, 2, 3):
        save_features(str(vdir / feature_file_name("vid", "avg", "frames", c)), torch.randn(20, 2, 6, generator=g))
        t = torch.randn(20, 3, 5, generator=g)
        if c == 2:
            t[4, 1, 0] = float("nan")
        save_features(str(tdir / feature_file_name("txt", "avg", "captions", c)), t)
    with pytest.raises(ValueError, match=r"txt_pool-avg_numcaptions-2\.pt layer 1 contains NaN"):
        sweep_files([str(vdir)], [str(tdir)], k=3, progress=False)
