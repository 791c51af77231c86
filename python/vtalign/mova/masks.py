"""MoVA's mask networks (docs/design.md §3.5): binary masks with straight-through gradients.

A mask is binary in the forward pass (a dimension is in or out of the subspace) and
differentiable in the backward pass through the sigmoid it thresholds (the
straight-through estimator of Bengio et al. 2013): m = 1[p > ½] + p − stop_grad(p),
so ∂m/∂logit = σ'(logit).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def straight_through_mask(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary mask with a straight-through gradient.

    Args:
        logits: any shape, floating.

    Returns:
        (mask, prob): `mask` is exactly 0/1 in value, with the gradient of `prob = σ(logits)`;
        `prob` is returned for penalties and for scoring how well the mask tracks a target.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor")
    prob = torch.sigmoid(logits)
    hard = (logits > 0).to(prob.dtype)
    # (p − p) is exactly 0 in value, so the sum stays exactly 0/1
    return hard + (prob - prob.detach()), prob


def slot_encoding(n_slots: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """[n_slots, dim] fixed sinusoidal codes of the frame index (any number of slots).

    Periods run geometrically from 4 to 400 frames, so neighbouring slots differ and the
    code stays unambiguous over long videos.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim}")
    t = torch.arange(n_slots, device=device, dtype=torch.float64)[:, None]
    periods = 4.0 * torch.logspace(0, 2, dim // 2, dtype=torch.float64, device=device)
    ang = 2 * math.pi * t / periods[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).to(dtype)


class TemporalMaskNetwork(nn.Module):
    """For caption b and frame slot t, a binary mask m^T[b,t] over the text embedding dims.

    It sees the caption (its features) and the slot index, never the video, so the text
    subspace it selects is a property of the caption alone and every caption can be
    scored against every video.

    forward(text_feats `[B, Dc]`, n_slots) -> (mask `[B, T, D]`, prob `[B, T, D]`).
    """

    def __init__(self, caption_dim: int, embed_dim: int, hidden: int = 256, slot_dim: int = 32,
                 init_bias: float = 2.0):
        super().__init__()
        self.slot_dim = slot_dim
        self.caption_in = nn.Linear(caption_dim, hidden)
        self.slot_in = nn.Linear(slot_dim, hidden, bias=False)
        self.body = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        # start with (almost) every dimension on: the slot loss then begins as the plain
        # per-frame CLIP loss and the masks learn what to drop
        nn.init.constant_(self.body[-1].bias, init_bias)

    def forward(self, text_feats: torch.Tensor, n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        slots = slot_encoding(n_slots, self.slot_dim, device=text_feats.device, dtype=text_feats.dtype)
        # the caption part is computed once per caption and broadcast over slots
        h = self.caption_in(text_feats)[:, None, :] + self.slot_in(slots)[None, :, :]
        return straight_through_mask(self.body(h))


class ConceptMaskNetwork(nn.Module):
    """For each frame, a binary mask m^V[b,t] over the frame embedding dims (the
    text-relevant visual concepts of that frame).

    forward(frame_feats `[B, T, Df]`) -> (mask `[B, T, D]`, prob `[B, T, D]`).
    """

    def __init__(self, frame_dim: int, embed_dim: int, hidden: int = 256, init_bias: float = 2.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(frame_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        nn.init.constant_(self.body[-1].bias, init_bias)

    def forward(self, frame_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return straight_through_mask(self.body(frame_feats))
