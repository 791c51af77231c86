"""Synthetic layer stacks with a planted best layer pair.

A shared latent scene z is seen by two "encoders". Layer l of each stack mixes
z with private noise, with the share of z peaking at a chosen layer, then
passes it through its own random non-linear map. Only z is shared, so the
alignment of (la, lb) rises with both layers' share of z and the planted pair
is the best one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class LayerStacks:
    feats_a: torch.Tensor  # [N, La, D]
    feats_b: torch.Tensor  # [N, Lb, D]
    best: tuple[int, int]
    signal_a: torch.Tensor  # [La] share of the latent per layer
    signal_b: torch.Tensor  # [Lb]


def _stack(z: torch.Tensor, n_layers: int, peak: int, dim: int, gen: torch.Generator,
           width: float) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = z.shape
    share = torch.tensor([math.exp(-((l - peak) / width) ** 2) for l in range(n_layers)]) * 0.9
    out = []
    for l in range(n_layers):
        noise = torch.randn(n, d, generator=gen)
        mixed = share[l].sqrt() * z + (1 - share[l]).sqrt() * noise
        w = torch.randn(d, dim, generator=gen) / math.sqrt(d)
        out.append(torch.tanh(mixed @ w))
    return torch.stack(out, dim=1), share


def layer_stacks(n: int = 1024, layers_a: int = 7, layers_b: int = 5, dim: int = 64, latent: int = 16,
                 best: tuple[int, int] = (4, 2), width: float = 1.5, seed: int = 0) -> LayerStacks:
    """Two `[N, L, D]` feature stacks whose most aligned layer pair is `best`."""
    if not (0 <= best[0] < layers_a and 0 <= best[1] < layers_b):
        raise ValueError(f"best={best} is outside the stacks ({layers_a}, {layers_b})")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent, generator=gen)
    fa, sa = _stack(z, layers_a, best[0], dim, gen, width)
    fb, sb = _stack(z, layers_b, best[1], dim, gen, width)
    return LayerStacks(fa, fb, best, sa, sb)


@dataclass
class VideoTextSet:
    """A synthetic video–text probing set with known ground truth.

    Every sample is a latent scene z [latent]. A video holds `max_frames`
    per-frame views (z seen through frame noise); a sample has `max_captions`
    partial captions (each mentions a random subset of the scene's latent
    dimensions, plus wording noise). Two layer-wise "encoders" of depth
    `layers_video` / `layers_text` map pooled views to features; the share of the
    scene each layer keeps peaks at `best`, so that pair is the planted best.
    Pooling more frames or captions averages the noise out, so alignment rises
    with both and saturates: the test-time scaling behaviour of Dynamic
    Reflections.
    """

    frames: torch.Tensor      # [N, max_frames, latent]
    captions: torch.Tensor    # [N, max_captions, latent]
    video_maps: list          # per layer: (share, private noise [N, latent], W [latent, dim])
    text_maps: list
    best: tuple[int, int]

    @property
    def n(self) -> int:
        return self.frames.shape[0]

    @staticmethod
    def _encode(pooled: torch.Tensor, maps: list) -> torch.Tensor:
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12) * math.sqrt(pooled.shape[-1])
        out = [torch.tanh((share ** 0.5 * pooled + (1 - share) ** 0.5 * noise) @ w)
               for share, noise, w in maps]
        return torch.stack(out, dim=1)

    def video_features(self, n_frames: int) -> torch.Tensor:
        """`[N, Lv, D]` from `n_frames` frames sampled uniformly over the clip."""
        t = self.frames.shape[1]
        if not 1 <= n_frames <= t:
            raise ValueError(f"n_frames must be in [1, {t}], got {n_frames}")
        idx = torch.linspace(0, t - 1, n_frames).round().long()
        return self._encode(self.frames[:, idx].mean(1), self.video_maps)

    def text_features(self, n_captions: int) -> torch.Tensor:
        """`[N, Lt, D]` from the first `n_captions` captions, pooled."""
        c = self.captions.shape[1]
        if not 1 <= n_captions <= c:
            raise ValueError(f"n_captions must be in [1, {c}], got {n_captions}")
        return self._encode(self.captions[:, :n_captions].mean(1), self.text_maps)


def _encoder_maps(n: int, layers: int, peak: int, latent: int, dim: int, gen: torch.Generator,
                  width: float, top_share: float) -> list:
    maps = []
    for l in range(layers):
        share = top_share * math.exp(-((l - peak) / width) ** 2)
        maps.append((share, torch.randn(n, latent, generator=gen),
                     torch.randn(latent, dim, generator=gen) / math.sqrt(latent)))
    return maps


def video_text_set(n: int = 1024, *, max_frames: int = 32, max_captions: int = 10, latent: int = 16,
                   dim: int = 96, layers_video: int = 8, layers_text: int = 6,
                   best: tuple[int, int] = (5, 3), frame_noise: float = 0.6, caption_noise: float = 0.5,
                   caption_coverage: float = 0.75, width: float = 1.6, top_share: float = 0.95,
                   group_size: int = 16, within_group: float = 0.5, seed: int = 0) -> VideoTextSet:
    """Generate a `VideoTextSet` (deterministic for a seed; no downloads)."""
    if not (0 <= best[0] < layers_video and 0 <= best[1] < layers_text):
        raise ValueError(f"best={best} is outside the encoders ({layers_video}, {layers_text})")
    if not 0 < caption_coverage <= 1:
        raise ValueError(f"caption_coverage must be in (0, 1], got {caption_coverage}")
    gen = torch.Generator().manual_seed(seed)
    # scenes come in semantic groups (a few dozen samples per group), as real
    # video sets do; neighbourhoods are then meaningful for both modalities
    groups = torch.randn(max(1, n // group_size), latent, generator=gen)
    z = groups[torch.randint(0, groups.shape[0], (n,), generator=gen)] \
        + within_group * torch.randn(n, latent, generator=gen)
    frames = z[:, None] + frame_noise * torch.randn(n, max_frames, latent, generator=gen)
    mentions = (torch.rand(n, max_captions, latent, generator=gen) < caption_coverage).float()
    # a caption says nothing about the dimensions it does not mention
    captions = mentions * z[:, None] + caption_noise * torch.randn(n, max_captions, latent, generator=gen)
    vmaps = _encoder_maps(n, layers_video, best[0], latent, dim, gen, width, top_share)
    tmaps = _encoder_maps(n, layers_text, best[1], latent, dim, gen, width, top_share)
    return VideoTextSet(frames, captions, vmaps, tmaps, best)
