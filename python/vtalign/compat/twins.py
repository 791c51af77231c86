"""VT-TWINS' loss module (Ko et al., CVPR 2022, github.com/KoDohwan/VT-TWINS `loss.py`) on vtalign's kernels.

Replace `from loss import S2DTW` with `from vtalign.compat.twins import S2DTW`:
`S2DTW(args)` and `forward(video_embd [B, n, D], text_embd [B, n, D]) -> loss` as
upstream -- text→video InfoNCE over −S2DTW (γ = 0.1, smoothing γ = 0.1, null
cost 0.5, negative dot product), the positive in the denominator, no
temperature -- with the B x B scores from one fused pairwise S2DTW instead of a
B²-row batch through numba. `TDA(args)` is its temporal augmentation (bounded
permutations |p[i] − i| <= 2 drawn by softmin(50 · self-similarity change)).
Differences: tensors stay on their device (upstream calls `.cuda()`), and
sequences of different lengths are accepted (upstream assumes n = m).
"""
from __future__ import annotations

import torch
from torch import nn

from vtalign.twins.augment import TemporalAugmentation
from vtalign.twins.loss import twins_loss

__all__ = ["S2DTW", "TDA"]


class TDA(nn.Module):
    """Temporal data augmentation; `args.num_clip` is the sequence length."""

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.num_clip = int(args.num_clip)
        self.aug = TemporalAugmentation(max_shift=2, sharpness=50.0)

    def forward(self, video_embd: torch.Tensor, text_embd: torch.Tensor):
        for name, x in (("video_embd", video_embd), ("text_embd", text_embd)):
            if x.dim() != 3 or x.shape[1] != self.num_clip:
                raise ValueError(f"{name} must be [B, num_clip={self.num_clip}, D], got {tuple(x.shape)}")
        return self.aug(video_embd)[0], self.aug(text_embd)[0]


class S2DTW(nn.Module):
    """VT-TWINS' S2DTW contrastive loss (`args` is kept for the augmentation, as upstream)."""

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.tda = TDA(args)

    def video_text(self, video_embd: torch.Tensor, text_embd: torch.Tensor) -> torch.Tensor:
        return twins_loss(video_embd, text_embd, temperature=1.0, symmetric=False, gamma=0.1,
                          smoothing_gamma=0.1, null_cost=0.5, cost="negdot")

    def forward(self, video_embd: torch.Tensor, text_embd: torch.Tensor) -> torch.Tensor:
        # upstream leaves the augmentation commented out of forward; so does this
        return self.video_text(video_embd, text_embd)
