"""Synthetic long video–text pairs with known concept windows (MoVA's data-generating process).

A "world" (fixed by its seed) holds K latent concepts, each with a text embedding and a
separate visual embedding, and two random non-linear observation maps (one per modality).
A pair is drawn as follows:

- the video has n_b valid frames (n_b uniform in [min_frames, max_frames]; padded to T);
- its caption holds S distinct concepts (sparse in K); concept s is visible only in its
  window [start_s, end_s) of frames; the windows are disjoint, in caption order, and leave
  gaps of text-irrelevant frames (temporal misalignment);
- frame t's latent is the sum of the visual embeddings of the concepts visible at t plus
  frame-specific nuisance (dimensions of their own), observed through the visual map;
- the caption's latent lists its concepts in temporal order, each with the time of its
  window (start and end frame, as timestamped captions such as "from 0:03 to 0:07" give):
  without that, no text-side temporal mask could be learned, since the text mask network
  sees only the caption and the frame slot. It is observed through the text map.

The ground-truth windows and per-concept visibility come back with the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LongVideoConfig:
    """Sizes of the generating process (defaults: the `mova.train --synthetic` set)."""

    n_concepts: int = 10          # K
    concepts_per_caption: int = 3  # S
    min_frames: int = 12
    max_frames: int = 16           # T (padding size)
    min_window: int = 2
    concept_dim: int = 16          # latent size of one concept embedding
    nuisance_dim: int = 16
    nuisance_scale: float = 1.0
    frame_dim: int = 64            # Dv
    text_dim: int = 64             # Dt
    map_hidden: int = 128

    def validate(self) -> None:
        for name in ("n_concepts", "concepts_per_caption", "min_frames", "max_frames", "min_window",
                     "concept_dim", "nuisance_dim", "frame_dim", "text_dim", "map_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.concepts_per_caption > self.n_concepts:
            raise ValueError(f"concepts_per_caption ({self.concepts_per_caption}) must be <= n_concepts "
                             f"({self.n_concepts})")
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) must be <= max_frames ({self.max_frames})")
        if self.concepts_per_caption * self.min_window > self.min_frames:
            raise ValueError(f"min_frames ({self.min_frames}) is too short for concepts_per_caption × min_window "
                             f"({self.concepts_per_caption} × {self.min_window})")
        if not math.isfinite(self.nuisance_scale) or self.nuisance_scale < 0:
            raise ValueError(f"nuisance_scale must be finite and >= 0, got {self.nuisance_scale}")


@dataclass
class LongVideoText:
    """A set of N synthetic pairs (pair i: caption i with video i).

    frames:   [N, T, Dv] float32, zero beyond each video's length
    valid:    [N, T] bool, the first n_i frames
    captions: [N, Dt] float32
    concepts: [N, S] long, caption i's concepts in temporal order
    windows:  [N, S, 2] long, (start, end) frames of concept s (end exclusive)
    visible:  [N, T, K] bool, concept k visible in frame t of video i (ground truth)
    """

    frames: torch.Tensor
    valid: torch.Tensor
    captions: torch.Tensor
    concepts: torch.Tensor
    windows: torch.Tensor
    visible: torch.Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]

    def subset(self, idx: torch.Tensor) -> LongVideoText:
        """The pairs at `idx` (a 1-D long tensor)."""
        return LongVideoText(self.frames[idx], self.valid[idx], self.captions[idx], self.concepts[idx],
                             self.windows[idx], self.visible[idx])

    def in_caption(self) -> torch.Tensor:
        """[N, K] bool: concept k is in caption i."""
        k = self.visible.shape[2]
        out = torch.zeros(len(self), k, dtype=torch.bool)
        out.scatter_(1, self.concepts, True)
        return out


class _RandomMap:
    """A fixed random two-layer tanh map R^d_in -> R^d_out (an "encoder" nobody trains)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, gen: torch.Generator):
        self.w1 = torch.randn(d_in, hidden, generator=gen) * (1.5 / math.sqrt(d_in))
        self.b1 = torch.randn(hidden, generator=gen) * 0.1
        self.w2 = torch.randn(hidden, d_out, generator=gen) * (1.5 / math.sqrt(hidden))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.tanh(x @ self.w1 + self.b1) @ self.w2)


class LongVideoWorld:
    """The fixed part of the generating process: concept embeddings and observation maps.

    Train and test sets drawn from one world share the concepts and maps; their pairs
    are independent.
    """

    def __init__(self, config: LongVideoConfig = LongVideoConfig(), seed: int = 0):
        if not isinstance(config, LongVideoConfig):
            raise TypeError(f"config must be a LongVideoConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        g = torch.Generator().manual_seed(int(seed))
        c = config
        # text and vision see each concept through unrelated embeddings
        self.text_emb = torch.randn(c.n_concepts, c.concept_dim, generator=g)
        self.vis_emb = torch.randn(c.n_concepts, c.concept_dim, generator=g)
        s = c.concepts_per_caption
        self.text_map = _RandomMap(s * (c.concept_dim + 2), c.map_hidden, c.text_dim, g)
        self.frame_map = _RandomMap(c.concept_dim + c.nuisance_dim, c.map_hidden, c.frame_dim, g)

    def _windows(self, n_frames: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """[N, S, 2] disjoint windows in order: the free frames beyond S·min_window are split
        uniformly at random among the S windows and the S+1 gaps around them."""
        c = self.config
        s = c.concepts_per_caption
        out = torch.empty(len(n_frames), s, 2, dtype=torch.long)
        for i, n in enumerate(n_frames.tolist()):
            free = n - s * c.min_window
            parts = torch.bincount(torch.randint(0, 2 * s + 1, (free,), generator=gen), minlength=2 * s + 1)
            t = 0
            for k in range(s):
                t += int(parts[2 * k])                   # gap before window k
                length = c.min_window + int(parts[2 * k + 1])
                out[i, k, 0], out[i, k, 1] = t, t + length
                t += length
        return out

    def sample(self, n: int, seed: int) -> LongVideoText:
        """Draw `n` independent pairs with generator seed `seed`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        c = self.config
        g = torch.Generator().manual_seed(int(seed))
        s, T, K = c.concepts_per_caption, c.max_frames, c.n_concepts
        n_frames = torch.randint(c.min_frames, c.max_frames + 1, (n,), generator=g)
        concepts = torch.stack([torch.randperm(K, generator=g)[:s] for _ in range(n)])
        windows = self._windows(n_frames, g)
        t = torch.arange(T)
        valid = t[None, :] < n_frames[:, None]
        in_win = (t[None, None, :] >= windows[:, :, 0:1]) & (t[None, None, :] < windows[:, :, 1:2])  # [N,S,T]
        visible = torch.zeros(n, T, K, dtype=torch.bool)
        visible.scatter_(2, concepts[:, None, :].expand(n, T, s), in_win.transpose(1, 2))

        content = in_win.transpose(1, 2).float() @ self.vis_emb[concepts]  # [N, T, concept_dim]
        nuisance = c.nuisance_scale * torch.randn(n, T, c.nuisance_dim, generator=g)
        frames = self.frame_map(torch.cat([content, nuisance], dim=2)) * valid[..., None]

        times = windows.float() / T * 2.0 - 1.0  # start and end on [-1, 1]
        slots = torch.cat([self.text_emb[concepts], times], dim=2)  # [N, S, concept_dim + 2]
        captions = self.text_map(slots.reshape(n, -1))
        return LongVideoText(frames.float().contiguous(), valid, captions.float().contiguous(), concepts,
                             windows, visible)


def long_video_splits(n_train: int = 4096, n_test: int = 512, *, config: LongVideoConfig = LongVideoConfig(),
                      seed: int = 0) -> tuple[LongVideoText, LongVideoText]:
    """(train, held-out test) sets from one world; everything follows from `seed`."""
    world = LongVideoWorld(config, seed=seed)
    return world.sample(n_train, seed=seed * 2 + 1), world.sample(n_test, seed=seed * 2 + 2)
