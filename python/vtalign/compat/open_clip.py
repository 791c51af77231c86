"""open_clip's `ClipLoss` (github.com/mlfoundations/open_clip, `loss.py`) on vtalign's fused InfoNCE.

Replace `from open_clip.loss import ClipLoss` with
`from vtalign.compat.open_clip import ClipLoss`: the constructor
`ClipLoss(local_loss=False, gather_with_grad=False, cache_labels=False, rank=0, world_size=1)`
and `forward(image_features, text_features, logit_scale, logit_bias=None,
output_dict=False)` behave as upstream -- features used as given (open_clip
normalises them in the model), `logit_scale` the multiplier, the mean of the
image→text and text→image cross-entropies, the same gathering rules across
ranks -- but the B x B logits are never materialised. `logit_bias` shifts every
logit of a row equally, which a softmax cross-entropy ignores, so it changes
nothing here either. `get_logits` still returns the dense logits for code that
inspects them.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from vtalign.ops.contrastive import contrastive_loss

__all__ = ["ClipLoss"]


def _gather(x: torch.Tensor, with_grad: bool, local_loss: bool, rank: int, world_size: int) -> torch.Tensor:
    if with_grad:
        from vtalign.distributed import all_gather_with_grad
        return all_gather_with_grad(x)
    parts = [torch.zeros_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    if not local_loss:
        parts[rank] = x  # upstream keeps the local rows differentiable
    return torch.cat(parts)


class ClipLoss(nn.Module):
    def __init__(self, local_loss=False, gather_with_grad=False, cache_labels=False, rank=0, world_size=1):
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.cache_labels = cache_labels
        self.rank = rank
        self.world_size = world_size
        self.prev_num_logits = 0
        self.labels = {}

    def get_ground_truth(self, device, num_logits) -> torch.Tensor:
        if self.prev_num_logits != num_logits or device not in self.labels:
            labels = torch.arange(num_logits, device=device, dtype=torch.long)
            if self.world_size > 1 and self.local_loss:
                labels = labels + num_logits * self.rank
            if self.cache_labels:
                self.labels[device] = labels
                self.prev_num_logits = num_logits
        else:
            labels = self.labels[device]
        return labels

    def _gathered(self, image_features, text_features):
        return (_gather(image_features, self.gather_with_grad, self.local_loss, self.rank, self.world_size),
                _gather(text_features, self.gather_with_grad, self.local_loss, self.rank, self.world_size))

    def get_logits(self, image_features, text_features, logit_scale, logit_bias=None):
        """The dense logits, as upstream returns them (for inspection; forward never builds them)."""
        if self.world_size > 1:
            all_img, all_txt = self._gathered(image_features, text_features)
            if self.local_loss:
                per_image = logit_scale * image_features @ all_txt.T
                per_text = logit_scale * text_features @ all_img.T
            else:
                per_image = logit_scale * all_img @ all_txt.T
                per_text = per_image.T
        else:
            per_image = logit_scale * image_features @ text_features.T
            per_text = logit_scale * text_features @ image_features.T
        if logit_bias is not None:
            per_image = per_image + logit_bias
            per_text = per_text + logit_bias
        return per_image, per_text

    def forward(self, image_features, text_features, logit_scale, logit_bias=None, output_dict=False):
        kw = dict(normalize=False)
        if self.world_size > 1:
            all_img, all_txt = self._gathered(image_features, text_features)
            if self.local_loss:
                # local rows against every rank's columns; positives sit at this rank's offset
                n = image_features.shape[0]
                pos = torch.zeros(n, all_txt.shape[0], dtype=torch.bool, device=image_features.device)
                pos[torch.arange(n), torch.arange(n) + n * self.rank] = True
                total = 0.5 * (contrastive_loss(image_features, all_txt, logit_scale, positives=pos,
                                                symmetric=False, **kw)
                               + contrastive_loss(text_features, all_img, logit_scale, positives=pos,
                                                  symmetric=False, **kw))
            else:
                total = contrastive_loss(all_img, all_txt, logit_scale, symmetric=True, **kw)
        else:
            total = contrastive_loss(image_features, text_features, logit_scale, symmetric=True, **kw)
        return {"contrastive_loss": total} if output_dict else total
