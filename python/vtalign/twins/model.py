"""Sequence encoders for the VT-TWINS demo and a mean-pooled CLIP-style baseline.

Both embed every clip and every caption with an MLP onto the unit sphere (unit vectors
keep VT-TWINS' negative-dot cost in [−1, 1], comparable to the null cost τ = 0.5 of
S2DTW's weak alignment). The S2DTW model scores a pair by −S2DTW of the two sequences;
the baseline by the cosine of their means.
"""
from __future__ import annotations

import torch
from torch import nn


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


class SequenceEncoders(nn.Module):
    """clips `[B, N, Dv]` -> `[B, N, D]`, captions `[B, M, Dt]` -> `[B, M, D]`, unit rows.

    forward(clips, captions) -> (clip_emb, caption_emb).
    """

    def __init__(self, clip_dim: int, caption_dim: int, embed_dim: int = 32, hidden: int = 128):
        super().__init__()
        for name, v in (("clip_dim", clip_dim), ("caption_dim", caption_dim), ("embed_dim", embed_dim),
                        ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.clip_dim, self.caption_dim = clip_dim, caption_dim
        self.clip_net = _mlp(clip_dim, hidden, embed_dim)
        self.caption_net = _mlp(caption_dim, hidden, embed_dim)

    def forward(self, clips: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name, x, d in (("clips", clips, self.clip_dim), ("captions", captions, self.caption_dim)):
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
                raise TypeError(f"{name} must be a floating-point tensor [B, L, {d}]")
            if x.shape[2] != d:
                raise ValueError(f"{name} must have {d} features, got {x.shape[2]}")
        unit = nn.functional.normalize
        return unit(self.clip_net(clips), dim=-1), unit(self.caption_net(captions), dim=-1)


def mean_pooled_scores(clip_emb: torch.Tensor, caption_emb: torch.Tensor) -> torch.Tensor:
    """Baseline retrieval scores `[B_text, B_video]`: cosine of the mean caption and mean clip."""
    unit = nn.functional.normalize
    return unit(caption_emb.mean(1), dim=-1) @ unit(clip_emb.mean(1), dim=-1).T
