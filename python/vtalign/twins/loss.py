"""VT-TWINS' contrastive loss over S2DTW (Ko et al., CVPR 2022; docs/design.md §3.4).

For B clip sequences and their B caption sequences, D[a, b] = S2DTW(clips_a, captions_b)
for all B×B pairs (`vtalign.s2dtw_pairwise`: one GEMM for the costs, one fused DP run for
the values and their gradients). The logits are −D / temperature, and the loss of caption
sequence i is text→video InfoNCE with the positive in the denominator:

    ℓ_i = log Σ_a exp(−D[a, i]/T) + D[i, i]/T.

The authors' code (github.com/KoDohwan/VT-TWINS, loss.py) uses T = 1, the text→video
direction only and the negative dot product as the S2DTW cost; `symmetric=True` adds the
video→text direction (averaged), as CLIP does.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vtalign.ops.soft_dtw import s2dtw_pairwise

Lengths = torch.Tensor | Sequence[int] | None
REDUCTIONS = ("mean", "sum", "none")


def _check_positive_float(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return float(v)


def s2dtw_logits(clips: torch.Tensor, captions: torch.Tensor, *, temperature: float = 1.0, gamma: float = 0.1,
                 smoothing_gamma: float = 0.1, null_cost: float = 0.5, cost: str = "negdot",
                 clip_lengths: Lengths = None, caption_lengths: Lengths = None,
                 backend: str = "auto") -> torch.Tensor:
    """Text-major logits `[B_text, B_video]`: L[i, a] = −S2DTW(clips_a, captions_i) / temperature.

    Args:
        clips: `[Bv, N, D]` clip embeddings; captions: `[Bt, M, D]` caption embeddings.
        temperature: T > 0; gamma, smoothing_gamma, null_cost, cost: S2DTW's γ, γs, τ and
            cost (see `vtalign.s2dtw`); clip_lengths `[Bv]`, caption_lengths `[Bt]`: valid
            lengths of padded sequences (None = full).
        backend: passed to `vtalign.s2dtw_pairwise` ("auto" = fused kernels).
    """
    t = _check_positive_float("temperature", temperature)
    d = s2dtw_pairwise(clips, captions, gamma=gamma, smoothing_gamma=smoothing_gamma,
                       null_cost=null_cost, cost=cost, x_lengths=clip_lengths,
                       y_lengths=caption_lengths, backend=backend)
    return (-d / t).T


def twins_loss(clips: torch.Tensor, captions: torch.Tensor, *, temperature: float = 1.0, symmetric: bool = False,
               gamma: float = 0.1, smoothing_gamma: float = 0.1, null_cost: float = 0.5, cost: str = "negdot",
               clip_lengths: Lengths = None, caption_lengths: Lengths = None, reduction: str = "mean",
               backend: str = "auto") -> torch.Tensor:
    """VT-TWINS loss: InfoNCE over −S2DTW / temperature, pair i = (clips_i, captions_i).

    Args:
        clips: `[B, N, D]`; captions: `[B, M, D]` (the same B).
        symmetric: also the video→text direction, averaged with text→video.
        reduction: "mean", "sum" or "none" (`[B]`, per caption sequence; with symmetric the
            mean of the two directions' loss for pair i).
        other arguments: as in `s2dtw_logits`.

    Returns:
        0-d loss (`[B]` for reduction="none"); differentiable in clips and captions.
    """
    if not isinstance(clips, torch.Tensor) or not isinstance(captions, torch.Tensor):
        raise TypeError("clips and captions must be tensors")
    if clips.dim() != 3 or captions.dim() != 3:
        raise ValueError(f"clips must be [B, N, D] and captions [B, M, D], got {tuple(clips.shape)} and "
                         f"{tuple(captions.shape)}")
    if clips.shape[0] != captions.shape[0]:
        raise ValueError(f"clips and captions must hold the same number of pairs B, got {clips.shape[0]} and "
                         f"{captions.shape[0]}")
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    logits = s2dtw_logits(clips, captions, temperature=temperature, gamma=gamma, smoothing_gamma=smoothing_gamma,
                          null_cost=null_cost, cost=cost, clip_lengths=clip_lengths,
                          caption_lengths=caption_lengths, backend=backend)
    pos = logits.diagonal()
    per = torch.logsumexp(logits, dim=1) - pos
    if symmetric:
        per = 0.5 * (per + torch.logsumexp(logits, dim=0) - pos)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


class TwinsLoss(nn.Module):
    """nn.Module face of `twins_loss` (fixed hyper-parameters).

    forward(clips `[B, N, D]`, captions `[B, M, D]`, clip_lengths=None, caption_lengths=None) -> 0-d loss.
    """

    def __init__(self, *, temperature: float = 1.0, symmetric: bool = False, gamma: float = 0.1,
                 smoothing_gamma: float = 0.1, null_cost: float = 0.5, cost: str = "negdot",
                 reduction: str = "mean", backend: str = "auto"):
        super().__init__()
        _check_positive_float("temperature", temperature)
        self.kw = dict(temperature=temperature, symmetric=symmetric, gamma=gamma, smoothing_gamma=smoothing_gamma,
                       null_cost=null_cost, cost=cost, reduction=reduction, backend=backend)

    def forward(self, clips: torch.Tensor, captions: torch.Tensor, clip_lengths: Lengths = None,
                caption_lengths: Lengths = None) -> torch.Tensor:
        return twins_loss(clips, captions, clip_lengths=clip_lengths, caption_lengths=caption_lengths, **self.kw)
