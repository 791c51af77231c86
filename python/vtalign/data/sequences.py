"""Synthetic clip/caption sequences with weak, partly shuffled correspondence (VT-TWINS' setting).

Uncurated narrated video is a sequence of clips and a sequence of narrations that
correspond only loosely: some clips show nothing that is said (background), some
narrations describe nothing that is shown (noise), and the narration drifts in time
against the clips. This generator plants that structure with a known answer.

A "world" (fixed by its seed) holds V events, each with a clip embedding and a separate
caption embedding, and two random non-linear observation maps. A pair is drawn as:

- a script of L distinct events in order;
- N clips: the L event clips in script order with N − L background clips inserted at
  random positions; every clip adds its own nuisance;
- M captions: each event's caption is kept with probability `keep`; the kept ones are
  locally shuffled (each moves at most `max_shift` places); noise captions (events drawn
  at random, unrelated to the clips) fill the sequence up to M.

The event behind each clip and caption (−1 for background and noise) comes back with
the data. With V small against the number of pairs, many scripts share the same events
in other orders, so telling them apart needs the temporal order, not the bag of events.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vtalign.data.long_video import _RandomMap


@dataclass(frozen=True)
class SequenceConfig:
    """Sizes of the generating process (defaults: the `twins.train --synthetic` set)."""

    n_events: int = 8       # V
    script_len: int = 6     # L
    n_clips: int = 8        # N >= L
    n_captions: int = 8     # M
    keep: float = 0.85      # probability that an event's caption is kept
    max_shift: int = 1      # local shuffle radius of the kept captions
    event_dim: int = 16
    nuisance_dim: int = 16
    nuisance_scale: float = 1.0
    clip_dim: int = 64
    caption_dim: int = 64
    map_hidden: int = 128

    def validate(self) -> None:
        for name in ("n_events", "script_len", "n_clips", "n_captions", "event_dim", "nuisance_dim",
                     "clip_dim", "caption_dim", "map_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {self.max_shift!r}")
        if self.script_len > self.n_events:
            raise ValueError(f"script_len ({self.script_len}) must be <= n_events ({self.n_events})")
        if self.script_len > self.n_clips:
            raise ValueError(f"script_len ({self.script_len}) must be <= n_clips ({self.n_clips})")
        if self.script_len > self.n_captions:
            raise ValueError(f"script_len ({self.script_len}) must be <= n_captions ({self.n_captions})")
        if not (0.0 < self.keep <= 1.0):
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if not math.isfinite(self.nuisance_scale) or self.nuisance_scale < 0:
            raise ValueError(f"nuisance_scale must be finite and >= 0, got {self.nuisance_scale}")


@dataclass
class ClipCaptionSequences:
    """N pairs of sequences (pair i: clips i with captions i).

    clips:         [P, N, Dv] float32
    captions:      [P, M, Dt] float32
    script:        [P, L] long, the events in order
    clip_event:    [P, N] long, event of each clip (−1 = background)
    caption_event: [P, M] long, event of each caption (−1 never; noise captions carry
                   a random event but `caption_noise` marks them)
    caption_noise: [P, M] bool, caption unrelated to the clips
    """

    clips: torch.Tensor
    captions: torch.Tensor
    script: torch.Tensor
    clip_event: torch.Tensor
    caption_event: torch.Tensor
    caption_noise: torch.Tensor

    def __len__(self) -> int:
        return self.clips.shape[0]

    def subset(self, idx: torch.Tensor) -> ClipCaptionSequences:
        """The pairs at `idx` (a 1-D long tensor)."""
        return ClipCaptionSequences(self.clips[idx], self.captions[idx], self.script[idx], self.clip_event[idx],
                                    self.caption_event[idx], self.caption_noise[idx])


def local_shuffle(n: int, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation p of range(n) with |p[i] − i| <= max_shift.

    Sorting the keys i + U[0, max_shift + 1) lets item i be passed only by the items
    j ∈ (i, i + max_shift] and pass only those in [i − max_shift, i), so every item
    ends at most max_shift places from where it started."""
    keys = torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64) * (max_shift + 1)
    return torch.argsort(keys, stable=True)


class SequenceWorld:
    """The fixed part: event embeddings (one per modality) and observation maps."""

    def __init__(self, config: SequenceConfig = SequenceConfig(), seed: int = 0):
        if not isinstance(config, SequenceConfig):
            raise TypeError(f"config must be a SequenceConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        g = torch.Generator().manual_seed(int(seed))
        c = config
        self.clip_emb = torch.randn(c.n_events, c.event_dim, generator=g)
        self.caption_emb = torch.randn(c.n_events, c.event_dim, generator=g)
        self.clip_map = _RandomMap(c.event_dim + c.nuisance_dim, c.map_hidden, c.clip_dim, g)
        self.caption_map = _RandomMap(c.event_dim + c.nuisance_dim, c.map_hidden, c.caption_dim, g)

    def sample(self, n: int, seed: int) -> ClipCaptionSequences:
        """Draw `n` independent pairs with generator seed `seed`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        c = self.config
        g = torch.Generator().manual_seed(int(seed))
        L, N, M = c.script_len, c.n_clips, c.n_captions
        script = torch.stack([torch.randperm(c.n_events, generator=g)[:L] for _ in range(n)])
        clip_event = torch.full((n, N), -1, dtype=torch.long)
        caption_event = torch.empty(n, M, dtype=torch.long)
        caption_noise = torch.ones(n, M, dtype=torch.bool)
        for i in range(n):
            slots = torch.sort(torch.randperm(N, generator=g)[:L]).values
            clip_event[i, slots] = script[i]
            kept = script[i][torch.rand(L, generator=g) < c.keep]
            kept = kept[local_shuffle(len(kept), c.max_shift, g)]
            # the narrations keep their (shuffled) order; noise ones land between them
            pos = torch.sort(torch.randperm(M, generator=g)[:len(kept)]).values
            caption_event[i] = torch.randint(0, c.n_events, (M,), generator=g)
            caption_event[i, pos] = kept
            caption_noise[i, pos] = False
        shown = (clip_event >= 0).float()[..., None]
        clip_lat = torch.cat([self.clip_emb[clip_event.clamp_min(0)] * shown,
                              c.nuisance_scale * torch.randn(n, N, c.nuisance_dim, generator=g)], dim=2)
        cap_lat = torch.cat([self.caption_emb[caption_event],
                             c.nuisance_scale * torch.randn(n, M, c.nuisance_dim, generator=g)], dim=2)
        return ClipCaptionSequences(self.clip_map(clip_lat).float().contiguous(),
                                    self.caption_map(cap_lat).float().contiguous(), script, clip_event,
                                    caption_event, caption_noise)


def sequence_splits(n_train: int = 2048, n_test: int = 256, *, config: SequenceConfig = SequenceConfig(),
                    seed: int = 0) -> tuple[ClipCaptionSequences, ClipCaptionSequences]:
    """(train, held-out test) sets from one world; everything follows from `seed`."""
    world = SequenceWorld(config, seed=seed)
    return world.sample(n_train, seed=seed * 2 + 1), world.sample(n_test, seed=seed * 2 + 2)
