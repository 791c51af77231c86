"""Float64 oracle for the contrastive losses (docs/design.md §3.3, §3.5).

Dense and plain on purpose: it builds the full logits (and the `[B, B, T]`
frame similarities of the slot loss) straight from the definitions, so it is
only for tests and small batches. Autograd through these torch ops gives the
reference gradients.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import unit_rows


def _unit(x: torch.Tensor) -> torch.Tensor:
    return unit_rows(x, torch.float64)


def _scale64(logit_scale) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        return logit_scale.to(torch.float64)
    return torch.tensor(float(logit_scale), dtype=torch.float64)


def infonce_from_logits(s: torch.Tensor, positives: torch.Tensor | None = None, *,
                        symmetric: bool = True, reduction: str = "mean") -> torch.Tensor:
    """InfoNCE over logits `s [N, M]` with a positive mask `[N, M]` (identity if None).

    Row loss i: −log Σ_{j∈P(i)} e^{s_ij} + log Σ_j e^{s_ij}; column loss j: the same
    over column j with P transposed. "none" returns per-row losses `[N]` (the mean of
    the row and column loss of index k when symmetric, which needs N == M).
    """
    n, m = s.shape
    if positives is None:
        positives = torch.eye(n, m, dtype=torch.bool, device=s.device)
    neg_inf = torch.tensor(float("-inf"), dtype=s.dtype, device=s.device)
    row = torch.logsumexp(s, 1) - torch.logsumexp(torch.where(positives, s, neg_inf), 1)
    if not symmetric:
        per = row
        total = row.mean() if reduction == "mean" else row.sum()
    else:
        col = torch.logsumexp(s, 0) - torch.logsumexp(torch.where(positives, s, neg_inf), 0)
        total = 0.5 * (row.mean() + col.mean()) if reduction == "mean" else 0.5 * (row.sum() + col.sum())
        per = 0.5 * (row + col) if n == m else None
    if reduction == "none":
        if per is None:
            raise ValueError("reduction='none' with symmetric=True needs a square problem")
        return per
    return total


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, *, positives: torch.Tensor | None = None,
                     symmetric: bool = True, reduction: str = "mean", normalize: bool = True) -> torch.Tensor:
    """CLIP/InfoNCE loss in float64: s_ij = scale·⟨â_i, b̂_j⟩, a `[N, D]`, b `[M, D]`
    (rows used as given when `normalize` is False)."""
    unit = _unit if normalize else (lambda x: x)
    s = _scale64(logit_scale) * (unit(a.to(torch.float64)) @ unit(b.to(torch.float64)).T)
    return infonce_from_logits(s, positives, symmetric=symmetric, reduction=reduction)


def slot_logits(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, *, pool: str = "mean",
                pool_temperature: float = 0.1) -> torch.Tensor:
    """Pooled frame-slot cosine `[N, M]`: pool over t ∈ V_j of cos(ta[i,t], vb[j,t]).

    ta `[N, T, D]`, vb `[M, T, D]`, valid `[M, T]` bool (the frames of video j).
    """
    cos = torch.einsum("itd,jtd->ijt", _unit(ta.to(torch.float64)), _unit(vb.to(torch.float64)))
    v = valid[None, :, :].expand_as(cos)
    count = valid.sum(1).to(torch.float64)[None, :]
    if pool == "mean":
        return torch.where(v, cos, torch.zeros_like(cos)).sum(2) / count
    if pool == "max":
        return torch.where(v, cos, torch.full_like(cos, float("-inf"))).max(2).values
    if pool == "lse":
        tau = float(pool_temperature)
        z = torch.where(v, cos / tau, torch.full_like(cos, float("-inf")))
        return tau * (torch.logsumexp(z, 2) - torch.log(count))
    raise ValueError(f"pool must be 'mean', 'max' or 'lse', got {pool!r}")


def slot_contrastive_loss(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, logit_scale, *,
                          pool: str = "mean", pool_temperature: float = 0.1,
                          positives: torch.Tensor | None = None, symmetric: bool = True,
                          reduction: str = "mean") -> torch.Tensor:
    """MoVA frame-slot InfoNCE in float64 over s_ij = scale · slot_logits(...)_ij."""
    s = _scale64(logit_scale) * slot_logits(ta, vb, valid, pool=pool, pool_temperature=pool_temperature)
    return infonce_from_logits(s, positives, symmetric=symmetric, reduction=reduction)
