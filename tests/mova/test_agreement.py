import numpy as np
import pytest
import torch

from vtalign.data.long_video import LongVideoConfig, LongVideoWorld
from vtalign.mova import auc, mask_window_auc


def test_auc_by_hand():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # a tie counts one half
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        auc(np.array([0.1, 0.2]), np.array([1, 1]))


@pytest.fixture(scope="module")
def data():
    cfg = LongVideoConfig(n_concepts=5, min_frames=8, max_frames=10, frame_dim=8, text_dim=8, map_hidden=8)
    return LongVideoWorld(cfg, seed=3).sample(60, seed=4)


def test_oracle_mask_scores_one_and_constant_mask_one_half(data):
    vis = data.visible.float()
    extra = torch.rand(vis.shape[0], vis.shape[1], 3, generator=torch.Generator().manual_seed(0))
    oracle = torch.cat([extra, vis], dim=2)  # concept k lives in dimension 3 + k
    r = mask_window_auc(oracle, data.valid, data.visible, data.in_caption())
    assert r["auc"] == pytest.approx(1.0)
    assert r["dims"] == [3 + k for k in range(5)]
    # a mask that never changes cannot beat chance (all ties)
    flat = torch.ones_like(oracle)
    assert mask_window_auc(flat, data.valid, data.visible, data.in_caption())["auc"] == pytest.approx(0.5)


def test_random_mask_near_chance(data):
    act = torch.rand(*data.visible.shape[:2], 8, generator=torch.Generator().manual_seed(1))
    assert 0.35 < mask_window_auc(act, data.valid, data.visible, data.in_caption())["auc"] < 0.65


def test_shape_mismatch_raises(data):
    with pytest.raises(ValueError, match="mask_activity"):
        mask_window_auc(torch.zeros(3, 2, 4), data.valid, data.visible, data.in_caption())
