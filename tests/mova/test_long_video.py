import pytest
import torch

from vtalign.data.long_video import LongVideoConfig, LongVideoWorld, long_video_splits

CFG = LongVideoConfig(n_concepts=6, concepts_per_caption=3, min_frames=8, max_frames=12, frame_dim=16, text_dim=16,
                      map_hidden=16)


def test_shapes_and_ground_truth_consistent():
    d = LongVideoWorld(CFG, seed=0).sample(40, seed=1)
    n, t, s, k = 40, CFG.max_frames, CFG.concepts_per_caption, CFG.n_concepts
    assert d.frames.shape == (n, t, CFG.frame_dim) and d.captions.shape == (n, CFG.text_dim)
    assert d.valid.shape == (n, t) and d.visible.shape == (n, t, k) and d.windows.shape == (n, s, 2)
    lengths = d.valid.sum(1)
    assert int(lengths.min()) >= CFG.min_frames and int(lengths.max()) <= CFG.max_frames
    assert len(set(lengths.tolist())) > 1  # lengths vary
    assert torch.equal(d.valid, torch.arange(t)[None] < lengths[:, None])
    assert float(d.frames[~d.valid].abs().max()) == 0.0
    for i in range(n):
        assert len(set(d.concepts[i].tolist())) == s
        w = d.windows[i]
        assert int(w[0, 0]) >= 0 and int(w[-1, 1]) <= int(lengths[i])
        assert bool((w[:, 1] - w[:, 0] >= CFG.min_window).all())
        assert bool((w[1:, 0] >= w[:-1, 1]).all())  # disjoint, in caption order
        expect = torch.zeros(t, k, dtype=torch.bool)
        for j in range(s):
            expect[w[j, 0]:w[j, 1], d.concepts[i, j]] = True
        assert torch.equal(d.visible[i], expect)
    assert torch.equal(d.in_caption().sum(1), torch.full((n,), s))


def test_seeded_and_split_independent():
    a_tr, a_te = long_video_splits(20, 10, config=CFG, seed=5)
    b_tr, b_te = long_video_splits(20, 10, config=CFG, seed=5)
    assert torch.equal(a_tr.frames, b_tr.frames) and torch.equal(a_te.captions, b_te.captions)
    assert not torch.equal(a_tr.frames[:10], a_te.frames)
    c_tr, _ = long_video_splits(20, 10, config=CFG, seed=6)
    assert not torch.equal(a_tr.captions, c_tr.captions)


def test_caption_carries_timing():
    """Two captions with the same concepts in different windows must differ: the text side
    needs the timing to learn a temporal mask."""
    world = LongVideoWorld(CFG, seed=0)
    d = world.sample(200, seed=2)
    key = [tuple(c.tolist()) for c in d.concepts]
    pairs = [(i, j) for i in range(200) for j in range(i) if key[i] == key[j]
             and not torch.equal(d.windows[i], d.windows[j])]
    assert pairs
    i, j = pairs[0]
    assert float((d.captions[i] - d.captions[j]).abs().max()) > 1e-3


def test_config_validation():
    with pytest.raises(ValueError, match="concepts_per_caption"):
        LongVideoWorld(LongVideoConfig(n_concepts=2, concepts_per_caption=3))
    with pytest.raises(ValueError, match="min_frames"):
        LongVideoWorld(LongVideoConfig(min_frames=4, max_frames=16, min_window=2))
    with pytest.raises(ValueError, match="n_concepts"):
        LongVideoWorld(LongVideoConfig(n_concepts=0))
    with pytest.raises(TypeError, match="config"):
        LongVideoWorld({"n_concepts": 3})
    with pytest.raises(ValueError, match="n must"):
        LongVideoWorld(CFG).sample(0, seed=0)
