import json

import pytest

from vtalign.data.long_video import LongVideoConfig
from vtalign.mova import train as mova_train

SMALL = LongVideoConfig(n_concepts=5, min_frames=6, max_frames=8, frame_dim=8, text_dim=8, map_hidden=8)
CFG = mova_train.TrainConfig(steps=3, batch_size=16, embed_dim=8, hidden=16)


def test_seeded_runs_repeat_exactly():
    a = mova_train.run(seed=3, n_train=32, n_test=16, cfg=CFG, data_config=SMALL, stream=None)
    b = mova_train.run(seed=3, n_train=32, n_test=16, cfg=CFG, data_config=SMALL, stream=None)
    for k in ("mova", "baseline", "mask_window_auc"):
        assert a[k] == b[k]
    assert set(a["mova"]["t2v"]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}


def test_cli_writes_json_atomically(tmp_path, capsys):
    out = tmp_path / "sub" / "res.json"
    rc = mova_train.main(["--synthetic", "--steps", "2", "--batch-size", "16", "--n-train", "32", "--n-test", "16",
                          "--json", str(out), "--quiet"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {"mova", "baseline", "mask_window_auc"} <= set(res)
    assert set(res["mova"]) == {"t2v", "v2t"} and "R@1" in res["baseline"]["v2t"]
    printed = capsys.readouterr().out
    assert "| MoVA | t2v |" in printed and "mask-window AUC" in printed
    assert [p.name for p in out.parent.iterdir()] == ["res.json"]  # no temporary file left


def test_cli_needs_synthetic():
    with pytest.raises(SystemExit):
        mova_train.main([])


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "r.json"
    mova_train.write_json_atomic(str(p), {"a": 1})
    with pytest.raises(TypeError):
        mova_train.write_json_atomic(str(p), {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["r.json"]
