"""VT-TWINS' temporal data augmentation (Ko et al., CVPR 2022).

Facts from the authors' public code (github.com/KoDohwan/VT-TWINS, loss.py, class TDA):
the candidates are the permutations p of the n steps with |p[i] − i| <= 2; a sequence x
`[n, D]` scores each candidate by how much it changes x's self-similarity
S = −x·xᵀ (detached), d_p = ‖S − S[p][:, p]‖_F, and one candidate is drawn from
softmin(sharpness · d) (sharpness 50 there), so permutations that keep the sequence's
structure are likely and those that break it are rare. Clips and captions are permuted
independently.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

MAX_PERMUTATIONS = 200_000


@lru_cache(maxsize=32)
def _bounded_permutations(n: int, max_shift: int) -> tuple[tuple[int, ...], ...]:
    out: list[tuple[int, ...]] = []
    used = [False] * n
    cur: list[int] = []

    def extend(i: int) -> None:
        if len(out) > MAX_PERMUTATIONS:
            raise ValueError(f"more than {MAX_PERMUTATIONS} permutations of n = {n} with max_shift = "
                             f"{max_shift}; use shorter sequences or a smaller max_shift")
        if i == n:
            out.append(tuple(cur))
            return
        # item i − max_shift must be placed by position i, or no later slot may take it
        if i - max_shift - 1 >= 0 and not used[i - max_shift - 1]:
            return
        for v in range(max(0, i - max_shift), min(n, i + max_shift + 1)):
            if not used[v]:
                used[v] = True
                cur.append(v)
                extend(i + 1)
                cur.pop()
                used[v] = False

    extend(0)
    return tuple(out)


def bounded_permutations(n: int, max_shift: int = 2) -> torch.Tensor:
    """All permutations p of range(n) with |p[i] − i| <= max_shift, `[P, n]` long, in
    lexicographic order (the identity first)."""
    for name, v in (("n", n), ("max_shift", max_shift)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if n == 0:
        return torch.zeros(1, 0, dtype=torch.long)
    return torch.tensor(_bounded_permutations(n, max_shift), dtype=torch.long)


def self_similarity_change(x: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """d[b, p] = ‖S_b − S_b[perm_p][:, perm_p]‖_F with S_b = −x_b·x_bᵀ.

    Args:
        x: `[B, n, D]`; perms: `[P, n]` long.

    Returns:
        `[B, P]` (no gradient).
    """
    x = x.detach()
    s = -(x @ x.transpose(1, 2))  # [B, n, n]
    sp = s[:, perms[:, :, None], perms[:, None, :]]  # [B, P, n, n]
    return torch.linalg.matrix_norm(s[:, None] - sp)


class TemporalAugmentation(nn.Module):
    """Permute each sequence by a bounded permutation drawn with probability
    softmin(sharpness · self-similarity change).

    forward(x `[B, n, D]`, generator=None) -> (x_perm `[B, n, D]`, perm `[B, n]` long),
    x_perm[b, i] = x[b, perm[b, i]]; gradients flow to x through the gather.
    """

    def __init__(self, max_shift: int = 2, sharpness: float = 50.0):
        super().__init__()
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
        if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float)) or not math.isfinite(sharpness) \
                or sharpness < 0:
            raise ValueError(f"sharpness must be a finite float >= 0, got {sharpness!r}")
        self.max_shift, self.sharpness = max_shift, float(sharpness)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probs `[B, P]`, perms `[P, n]`) for x `[B, n, D]`."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
            raise TypeError("x must be a floating-point tensor [B, n, D]")
        perms = bounded_permutations(x.shape[1], self.max_shift).to(x.device)
        d = self_similarity_change(x, perms)
        return torch.softmax(-self.sharpness * d, dim=1), perms

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        probs, perms = self.distribution(x)
        if generator is not None and generator.device.type != probs.device.type:
            # a seeded CPU generator keeps a CUDA run's draws identical to the CPU run's
            pick = torch.multinomial(probs.detach().to(generator.device), 1, generator=generator)[:, 0]
            pick = pick.to(probs.device)
        else:
            pick = torch.multinomial(probs, 1, generator=generator)[:, 0]
        perm = perms[pick]
        return torch.gather(x, 1, perm[..., None].expand_as(x)), perm
