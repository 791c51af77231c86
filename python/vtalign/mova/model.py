"""MoVA (docs/design.md §3.5) and its CLIP-style baseline over precomputed features.

Both models share the projections: a per-frame video MLP z^V[b,t] and a caption MLP
z^T[b], into one D-dim space. MoVA adds the two mask networks; the baseline scores a
caption against the mean of its video's valid frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vtalign.mova.masks import ConceptMaskNetwork, TemporalMaskNetwork
from vtalign.ops._common import unit_rows
from vtalign.ops.contrastive import POOLS


def check_features(frames: torch.Tensor, valid: torch.Tensor, captions: torch.Tensor | None,
                   frame_dim: int, text_dim: int) -> None:
    """Shape/dtype checks of the model inputs, naming the argument."""
    if not isinstance(frames, torch.Tensor) or not frames.is_floating_point() or frames.dim() != 3:
        raise TypeError("frames must be a floating-point tensor [B, T, Dv]")
    if frames.shape[2] != frame_dim:
        raise ValueError(f"frames must have Dv = {frame_dim} features, got {frames.shape[2]}")
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool:
        raise TypeError("valid must be a bool tensor [B, T]")
    if tuple(valid.shape) != tuple(frames.shape[:2]):
        raise ValueError(f"valid must have shape {tuple(frames.shape[:2])}, got {tuple(valid.shape)}")
    if frames.shape[0] and not bool(valid.any(1).all()):
        raise ValueError("valid: every video needs at least one valid frame")
    if captions is not None:
        if not isinstance(captions, torch.Tensor) or not captions.is_floating_point() or captions.dim() != 2:
            raise TypeError("captions must be a floating-point tensor [B, Dt]")
        if captions.shape[1] != text_dim:
            raise ValueError(f"captions must have Dt = {text_dim} features, got {captions.shape[1]}")


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of x `[B, T, D]` over the valid frames `[B, T]` -> `[B, D]`."""
    w = valid.to(x.dtype)
    return (x * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return unit_rows(x, x.dtype)


def pool_slots(cos: torch.Tensor, valid: torch.Tensor, pool: str, pool_temperature: float) -> torch.Tensor:
    """Pool slot cosines `[Nc, Nv, T]` over video j's valid frames `[Nv, T]` -> `[Nc, Nv]`,
    exactly as `vtalign.slot_contrastive_loss` pools them (docs/design.md §3.3)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    v = valid[None, :, :]
    n_valid = valid.sum(1).to(cos.dtype)[None, :]
    if pool == "mean":
        return (cos * v).sum(2) / n_valid
    if pool == "max":
        return cos.masked_fill(~v, float("-inf")).amax(2)
    tau = float(pool_temperature)
    return tau * (torch.logsumexp(cos.masked_fill(~v, float("-inf")) / tau, 2) - torch.log(n_valid))


@dataclass
class MoVAOutput:
    """What one MoVA forward pass gives (B pairs, T frame slots, D embedding dims).

    z_t `[B, D]`, z_v `[B, T, D]`, pooled_v `[B, D]` (mean over valid frames),
    ta `[B, T, D]` = text_mask ⊙ z_t, vb `[B, T, D]` = frame_mask ⊙ z_v,
    text_mask / frame_mask `[B, T, D]` binary (straight-through), text_prob / frame_prob
    their sigmoid probabilities, valid `[B, T]`.
    """

    z_t: torch.Tensor
    z_v: torch.Tensor
    pooled_v: torch.Tensor
    ta: torch.Tensor
    vb: torch.Tensor
    text_mask: torch.Tensor
    frame_mask: torch.Tensor
    text_prob: torch.Tensor
    frame_prob: torch.Tensor
    valid: torch.Tensor


class DualProjection(nn.Module):
    """The projections both models share: captions `[B, Dt]` -> z^T `[B, D]`, frames
    `[B, T, Dv]` -> z^V `[B, T, D]` (frame by frame)."""

    def __init__(self, frame_dim: int, text_dim: int, embed_dim: int = 64, hidden: int = 256):
        super().__init__()
        for name, v in (("frame_dim", frame_dim), ("text_dim", text_dim), ("embed_dim", embed_dim),
                        ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.frame_dim, self.text_dim, self.embed_dim = frame_dim, text_dim, embed_dim
        self.text_proj = _mlp(text_dim, hidden, embed_dim)
        self.video_proj = _mlp(frame_dim, hidden, embed_dim)

    def encode_text(self, captions: torch.Tensor) -> torch.Tensor:
        """captions `[B, Dt]` -> z^T `[B, D]`."""
        return self.text_proj(captions)

    def encode_frames(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """frames `[B, T, Dv]` -> z^V `[B, T, D]`, zero at invalid frames."""
        return self.video_proj(frames) * valid[..., None].to(frames.dtype)


class ClipBaseline(DualProjection):
    """CLIP-style baseline: caption vs mean-pooled frames, cosine similarity.

    forward(frames `[B, T, Dv]`, valid `[B, T]`, captions `[B, Dt]`) -> (z_t `[B, D]`, pooled_v `[B, D]`).
    """

    def forward(self, frames: torch.Tensor, valid: torch.Tensor, captions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        check_features(frames, valid, captions, self.frame_dim, self.text_dim)
        return self.encode_text(captions), masked_mean(self.encode_frames(frames, valid), valid)

    @torch.no_grad()
    def scores(self, captions: torch.Tensor, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Retrieval scores `[Nc, Nv]`: cos(z^T_i, mean-pooled z^V_j)."""
        check_features(frames, valid, captions, self.frame_dim, self.text_dim)
        z_t, pooled = self.encode_text(captions), masked_mean(self.encode_frames(frames, valid), valid)
        return _unit(z_t) @ _unit(pooled).T


class MoVA(DualProjection):
    """Reference MoVA: dual projections plus a Temporal and a Concept Mask Network.

    forward(frames `[B, T, Dv]`, valid `[B, T]` bool, captions `[B, Dt]`) -> `MoVAOutput`,
    where ta[b,t] = m^T[b,t] ⊙ z^T[b] and vb[b,t] = m^V[b,t] ⊙ z^V[b,t].
    """

    def __init__(self, frame_dim: int, text_dim: int, embed_dim: int = 64, hidden: int = 256,
                 mask_hidden: int = 256):
        super().__init__(frame_dim, text_dim, embed_dim, hidden)
        self.temporal_mask = TemporalMaskNetwork(text_dim, embed_dim, hidden=mask_hidden)
        self.concept_mask = ConceptMaskNetwork(frame_dim, embed_dim, hidden=mask_hidden)

    def text_slots(self, captions: torch.Tensor, n_slots: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_t `[B, D]`, ta `[B, T, D]`, text_mask, text_prob `[B, T, D]`) for T = n_slots."""
        z_t = self.encode_text(captions)
        mask, prob = self.temporal_mask(captions, n_slots)
        return z_t, mask * z_t[:, None, :], mask, prob

    def frame_slots(self, frames: torch.Tensor, valid: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_v, vb, frame_mask, frame_prob), all `[B, T, D]`."""
        z_v = self.encode_frames(frames, valid)
        mask, prob = self.concept_mask(frames)
        return z_v, mask * z_v, mask, prob

    def forward(self, frames: torch.Tensor, valid: torch.Tensor, captions: torch.Tensor) -> MoVAOutput:
        check_features(frames, valid, captions, self.frame_dim, self.text_dim)
        if captions.shape[0] != frames.shape[0]:
            raise ValueError(f"captions and frames must hold the same number of pairs, got "
                             f"{captions.shape[0]} and {frames.shape[0]}")
        z_t, ta, tm, tp = self.text_slots(captions, frames.shape[1])
        z_v, vb, fm, fp = self.frame_slots(frames, valid)
        return MoVAOutput(z_t, z_v, masked_mean(z_v, valid), ta, vb, tm, fm, tp, fp, valid)

    @torch.no_grad()
    def scores(self, captions: torch.Tensor, frames: torch.Tensor, valid: torch.Tensor, *,
               global_weight: float, slot_weight: float, pool: str = "mean", pool_temperature: float = 0.1,
               chunk: int = 64) -> torch.Tensor:
        """Retrieval scores `[Nc, Nv]` = global_weight·cos(z^T_i, pooled z^V_j)
        + slot_weight·pool_{t∈V_j} cos(ta[i,t], vb[j,t]).

        With the weights λg·scale_g and λtv·scale_tv (`MoVALoss.score_weights`) this is the
        sum of the logits the two InfoNCE terms of the loss are trained on.
        """
        check_features(frames, valid, captions, self.frame_dim, self.text_dim)
        z_t, ta, _, _ = self.text_slots(captions, frames.shape[1])
        z_v, vb, _, _ = self.frame_slots(frames, valid)
        g = _unit(z_t) @ _unit(masked_mean(z_v, valid)).T
        ta_hat, vb_hat = _unit(ta), _unit(vb)
        rows = []
        for r0 in range(0, len(captions), chunk):
            cos = torch.einsum("itd,jtd->ijt", ta_hat[r0:r0 + chunk], vb_hat)
            rows.append(pool_slots(cos, valid, pool, pool_temperature))
        return global_weight * g + slot_weight * torch.cat(rows, 0)
