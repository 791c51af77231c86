"""MoVA's training loss: L = λg·L_global + λtv·L_temporal + λs·(mask density), docs/design.md §3.5.

Both contrastive terms go through vtalign's public ops (`contrastive_loss`,
`slot_contrastive_loss`) with backend "auto", so they run the fused kernels wherever
they exist (Triton on CUDA, the chunked CPU path otherwise). Each term has its own
learnable CLIP logit scale.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vtalign.mova.model import MoVAOutput
from vtalign.nn.contrastive import ContrastiveLoss, SlotContrastiveLoss


def mask_density(out: MoVAOutput) -> torch.Tensor:
    """Mean of the binary text and frame masks over valid slots (0-d, straight-through grad).

    Penalising it keeps the selected subspaces small, so a caption's slot keeps only the
    dimensions that the frame at that slot supports.
    """
    w = out.valid.to(out.text_mask.dtype)[..., None]
    denom = w.sum().clamp_min(1.0) * out.text_mask.shape[-1]
    return 0.5 * ((out.text_mask * w).sum() + (out.frame_mask * w).sum()) / denom


class MoVALoss(nn.Module):
    """forward(out: MoVAOutput) -> (loss 0-d, parts dict of detached 0-d tensors).

    Args:
        lambda_global, lambda_temporal, lambda_sparsity: the weights λg, λtv, λs (>= 0).
        pool, pool_temperature: the slot pooling of `slot_contrastive_loss`.
        backend: passed to the ops ("auto" = fused kernels where available).
    """

    def __init__(self, *, lambda_global: float = 1.0, lambda_temporal: float = 1.0, lambda_sparsity: float = 0.1,
                 pool: str = "mean", pool_temperature: float = 0.1, backend: str = "auto"):
        super().__init__()
        for name, v in (("lambda_global", lambda_global), ("lambda_temporal", lambda_temporal),
                        ("lambda_sparsity", lambda_sparsity)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(v).__name__}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if lambda_global == 0 and lambda_temporal == 0:
            raise ValueError("lambda_global and lambda_temporal cannot both be 0")
        self.lambda_global, self.lambda_temporal = float(lambda_global), float(lambda_temporal)
        self.lambda_sparsity = float(lambda_sparsity)
        self.global_loss = ContrastiveLoss(backend=backend)
        self.slot_loss = SlotContrastiveLoss(pool=pool, pool_temperature=pool_temperature, backend=backend)

    @property
    def pool(self) -> str:
        return self.slot_loss.pool

    @property
    def pool_temperature(self) -> float:
        return self.slot_loss.pool_temperature

    def score_weights(self) -> tuple[float, float]:
        """(λg·scale_g, λtv·scale_tv): weights of the global and slot cosines whose sum is the
        sum of the logits of the two InfoNCE terms (used to score retrieval)."""
        return (self.lambda_global * float(self.global_loss.scale().detach()),
                self.lambda_temporal * float(self.slot_loss.scale().detach()))

    def forward(self, out: MoVAOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not isinstance(out, MoVAOutput):
            raise TypeError(f"out must be a MoVAOutput, got {type(out).__name__}")
        parts: dict[str, torch.Tensor] = {}
        total = out.z_t.new_zeros(())
        if self.lambda_global:
            parts["global"] = self.global_loss(out.z_t, out.pooled_v)
            total = total + self.lambda_global * parts["global"]
        if self.lambda_temporal:
            parts["temporal"] = self.slot_loss(out.ta, out.vb, out.valid)
            total = total + self.lambda_temporal * parts["temporal"]
        parts["density"] = mask_density(out)
        total = total + self.lambda_sparsity * parts["density"]
        return total, {k: v.detach() for k, v in parts.items()}
