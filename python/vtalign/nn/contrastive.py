"""nn.Module faces of the contrastive losses, with CLIP's learnable temperature."""
from __future__ import annotations

import math

import torch
from torch import nn

from vtalign.ops.contrastive import DEFAULT_WORKSPACE, contrastive_loss, slot_contrastive_loss

INIT_LOG_SCALE = math.log(1 / 0.07)
MAX_LOG_SCALE = math.log(100.0)


class _LearnableScale(nn.Module):
    """log-parameterised multiplier: scale = exp(min(logit_scale, max_log_scale)).

    CLIP initialises the log-parameter at log(1/0.07) and keeps the multiplier at most 100;
    the clamp here is in the forward pass, so past the cap the parameter gets no gradient
    and the multiplier stays 100, whether or not the training loop clamps the data too.
    """

    def __init__(self, init_log_scale: float, max_log_scale: float, learnable: bool):
        super().__init__()
        if not math.isfinite(init_log_scale) or not math.isfinite(max_log_scale):
            raise ValueError("init_log_scale and max_log_scale must be finite")
        t = torch.tensor(float(init_log_scale))
        if learnable:
            self.logit_scale = nn.Parameter(t)
        else:
            self.register_buffer("logit_scale", t)
        self.max_log_scale = float(max_log_scale)

    def scale(self) -> torch.Tensor:
        """The current multiplier exp(clamp(logit_scale, max=max_log_scale)), a 0-d tensor."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()


class ContrastiveLoss(_LearnableScale):
    """CLIP / InfoNCE loss with a learnable logit scale (see `vtalign.contrastive_loss`).

    forward(a `[N, D]`, b `[M, D]`, positives `[N, M]` bool or None) -> 0-d loss
    (`[N]` for reduction="none").
    """

    def __init__(self, *, init_log_scale: float = INIT_LOG_SCALE, max_log_scale: float = MAX_LOG_SCALE,
                 learnable: bool = True, symmetric: bool = True, reduction: str = "mean",
                 backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE,
                 precision: str = "tf32x3"):
        super().__init__(init_log_scale, max_log_scale, learnable)
        self.symmetric, self.reduction, self.backend = symmetric, reduction, backend
        self.max_workspace_bytes, self.precision = max_workspace_bytes, precision

    def forward(self, a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
        return contrastive_loss(a, b, self.scale(), positives=positives, symmetric=self.symmetric,
                                reduction=self.reduction, backend=self.backend,
                                max_workspace_bytes=self.max_workspace_bytes, precision=self.precision)


class SlotContrastiveLoss(_LearnableScale):
    """MoVA frame-slot InfoNCE with a learnable logit scale (see `vtalign.slot_contrastive_loss`).

    forward(ta `[N, T, D]`, vb `[M, T, D]`, valid `[M, T]` bool, positives `[N, M]` or None)
    -> 0-d loss (`[N]` for reduction="none").
    """

    def __init__(self, *, pool: str = "mean", pool_temperature: float = 0.1,
                 init_log_scale: float = INIT_LOG_SCALE, max_log_scale: float = MAX_LOG_SCALE,
                 learnable: bool = True, symmetric: bool = True, reduction: str = "mean",
                 backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE,
                 precision: str = "tf32x3"):
        super().__init__(init_log_scale, max_log_scale, learnable)
        self.pool, self.pool_temperature = pool, pool_temperature
        self.symmetric, self.reduction, self.backend = symmetric, reduction, backend
        self.max_workspace_bytes, self.precision = max_workspace_bytes, precision

    def forward(self, ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor,
                positives: torch.Tensor | None = None) -> torch.Tensor:
        return slot_contrastive_loss(ta, vb, valid, self.scale(), pool=self.pool,
                                     pool_temperature=self.pool_temperature, positives=positives,
                                     symmetric=self.symmetric, reduction=self.reduction, backend=self.backend,
                                     max_workspace_bytes=self.max_workspace_bytes, precision=self.precision)
