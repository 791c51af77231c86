import json

import pytest

from vtalign.data.sequences import SequenceConfig
from vtalign.twins import train as twins_train

SMALL = SequenceConfig(n_events=5, script_len=3, n_clips=4, n_captions=4, clip_dim=8, caption_dim=8, map_hidden=8)
CFG = twins_train.TwinsTrainConfig(steps=2, batch_size=8, embed_dim=8, hidden=16)


def test_seeded_demo_repeats_exactly():
    a = twins_train.run(seed=1, n_train=16, n_test=10, cfg=CFG, data_config=SMALL, stream=None)
    b = twins_train.run(seed=1, n_train=16, n_test=10, cfg=CFG, data_config=SMALL, stream=None)
    assert a["s2dtw"] == b["s2dtw"] and a["baseline"] == b["baseline"]


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "tw.json"
    rc = twins_train.main(["--synthetic", "--steps", "1", "--batch-size", "8", "--n-train", "16", "--n-test", "10",
                           "--json", str(out), "--quiet"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["s2dtw"]) == {"t2v", "v2t"} and "R@1" in res["baseline"]["t2v"]
    assert 0.0 <= res["augmentation_permuted_fraction"] <= 1.0
    assert "| S2DTW (VT-TWINS) | t2v |" in capsys.readouterr().out


def test_cli_needs_synthetic():
    with pytest.raises(SystemExit):
        twins_train.main(["--json", "x.json"])
