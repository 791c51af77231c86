import pytest
import torch

from vtalign.data.sequences import SequenceConfig, SequenceWorld, local_shuffle, sequence_splits

CFG = SequenceConfig(n_events=6, script_len=4, n_clips=6, n_captions=6, keep=0.75, max_shift=1, clip_dim=8,
                     caption_dim=8, map_hidden=16)


def test_local_shuffle_bounds():
    g = torch.Generator().manual_seed(0)
    moved = False
    for _ in range(50):
        p = local_shuffle(9, 2, g)
        assert sorted(p.tolist()) == list(range(9))
        assert bool(((p - torch.arange(9)).abs() <= 2).all())
        moved |= bool((p != torch.arange(9)).any())
    assert moved
    assert local_shuffle(5, 0, g).tolist() == list(range(5))


def test_ground_truth_consistent():
    d = SequenceWorld(CFG, seed=0).sample(30, seed=1)
    assert d.clips.shape == (30, 6, 8) and d.captions.shape == (30, 6, 8)
    for i in range(30):
        shown = d.clip_event[i][d.clip_event[i] >= 0]
        assert shown.tolist() == d.script[i].tolist()  # clips follow the script
        said = d.caption_event[i][~d.caption_noise[i]].tolist()
        assert set(said) <= set(d.script[i].tolist())
        pos = [d.script[i].tolist().index(e) for e in said]
        rank = sorted(range(len(pos)), key=lambda k: pos[k])
        assert all(abs(r - k) <= CFG.max_shift for k, r in enumerate(rank))  # partly shuffled
    assert bool(d.caption_noise.any()) and bool((d.clip_event < 0).any())


def test_seeded():
    a, _ = sequence_splits(10, 5, config=CFG, seed=2)
    b, _ = sequence_splits(10, 5, config=CFG, seed=2)
    c, _ = sequence_splits(10, 5, config=CFG, seed=3)
    assert torch.equal(a.clips, b.clips) and torch.equal(a.captions, b.captions)
    assert not torch.equal(a.clips, c.clips)


def test_config_validation():
    with pytest.raises(ValueError, match="script_len"):
        SequenceWorld(SequenceConfig(n_events=3, script_len=4))
    with pytest.raises(ValueError, match="keep"):
        SequenceWorld(SequenceConfig(keep=0.0))
    with pytest.raises(ValueError, match="max_shift"):
        SequenceWorld(SequenceConfig(max_shift=-1))
    with pytest.raises(TypeError, match="config"):
        SequenceWorld(None)
