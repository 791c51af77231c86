"""Synthetic layer stacks with a planted best layer pair.

A shared latent scene z is seen by two "encoders". Layer l of each stack mixes
z with private noise, with the share of z peaking at a chosen layer, then
passes it through its own random non-linear map. Only z is shared, so the
alignment of (la, lb) rises with both layers' share of z and the planted pair
is the best one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class LayerStacks:
    feats_a: torch.Tensor  # [N, La, D]
    feats_b: torch.Tensor  # [N, Lb, D]
    best: tuple[int, int]
    signal_a: torch.Tensor  # [La] share of the latent per layer
    signal_b: torch.Tensor  # [Lb]


def _stack(z: torch.Tensor, n_layers: int, peak: int, dim: int, gen: torch.Generator,
           width: float) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = z.shape
    share = torch.tensor([math.exp(-((l - peak) / width) ** 2) for l in range(n_layers)]) * 0.9
    out = []
    for l in range(n_layers):
        noise = torch.randn(n, d, generator=gen)
        mixed = share[l].sqrt() * z + (1 - share[l]).sqrt() * noise
        w = torch.randn(d, dim, generator=gen) / math.sqrt(d)
        out.append(torch.tanh(mixed @ w))
    return torch.stack(out, dim=1), share


def layer_stacks(n: int = 1024, layers_a: int = 7, layers_b: int = 5, dim: int = 64, latent: int = 16,
                 best: tuple[int, int] = (4, 2), width: float = 1.5, seed: int = 0) -> LayerStacks:
    """Two `[N, L, D]` feature stacks whose most aligned layer pair is `best`."""
    if not (0 <= best[0] < layers_a and 0 <= best[1] < layers_b):
        raise ValueError(f"best={best} is outside the stacks ({layers_a}, {layers_b})")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent, generator=gen)
    fa, sa = _stack(z, layers_a, best[0], dim, gen, width)
    fb, sb = _stack(z, layers_b, best[1], dim, gen, width)
    return LayerStacks(fa, fb, best, sa, sb)
