"""Test-time scaling features from real encoders (Dynamic Reflections, docs/design.md §3.6).

Multi-frame: sample n_f frames uniformly over the video; a model with a native
window of n_o frames sees sub-clips of n_o (consecutive groups of the sampled
frames) whose per-layer features are averaged. Fewer than n_o frames are
repeated (nearest-neighbour in time) to fill the window, since video models
have fixed temporal position embeddings.
Multi-caption: the first n_c captions are concatenated into one string and the
hidden states are mean-pooled over tokens, per layer.

Models are passed in already loaded: nothing here downloads weights.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

ClipEncoder = Callable[[torch.Tensor], torch.Tensor]  # [B, n_o, C, H, W] -> [B, L, D]


def uniform_indices(total: int, n: int) -> torch.Tensor:
    """`n` indices spread uniformly over `range(total)` (first and last included)."""
    if total < 1 or n < 1:
        raise ValueError(f"need total >= 1 and n >= 1, got total={total}, n={n}")
    return torch.linspace(0, total - 1, n).round().long()


def subclips(n_frames: int, native: int) -> list[torch.Tensor]:
    """Positions (into the n_frames sampled frames) of each sub-clip of `native` frames.

    n_frames <= native: one clip, frames repeated to fill the window;
    n_frames > native: ceil(n_frames / native) consecutive clips, the last one
    filled by uniform resampling of its own frames.
    """
    if n_frames < 1 or native < 1:
        raise ValueError(f"n_frames and native must be >= 1, got {n_frames}, {native}")
    clips = []
    for s in range(0, n_frames, native):
        span = torch.arange(s, min(s + native, n_frames))
        clips.append(span[uniform_indices(len(span), native)] if len(span) < native else span)
    return clips


def hf_video_encoder(model: torch.nn.Module) -> ClipEncoder:
    """Adapter for a Hugging Face video model (e.g. VideoMAE): token-mean of every hidden state."""
    def encode(clip: torch.Tensor) -> torch.Tensor:
        out = model(pixel_values=clip, output_hidden_states=True)
        return torch.stack([h.mean(1) for h in out.hidden_states], dim=1)
    return encode


@torch.no_grad()
def multi_frame_features(encode: ClipEncoder, videos: torch.Tensor, n_frames: int, native_frames: int,
                         *, batch_size: int = 8) -> torch.Tensor:
    """Per-layer features of `n_frames` uniformly sampled frames.

    Args:
        encode: maps a clip batch `[B, native_frames, C, H, W]` to `[B, L, D]`.
        videos: `[N, T, C, H, W]`.
        n_frames: 1 <= n_frames <= T.
        native_frames: the model's window n_o.

    Returns:
        `[N, L, D]` float32, the average over sub-clips.
    """
    if not isinstance(videos, torch.Tensor) or videos.dim() != 5:
        raise ValueError(f"videos must be a [N, T, C, H, W] tensor, got "
                         f"{tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__}")
    total = videos.shape[1]
    if not 1 <= n_frames <= total:
        raise ValueError(f"n_frames must be in [1, {total}] (the video length), got {n_frames}")
    picked = uniform_indices(total, n_frames)
    clips = subclips(n_frames, native_frames)
    feats = []
    for s in range(0, videos.shape[0], batch_size):
        batch = videos[s:s + batch_size, picked]
        acc = None
        for pos in clips:
            f = encode(batch[:, pos]).float()
            acc = f if acc is None else acc + f
        feats.append(acc / len(clips))
    return torch.cat(feats)


@torch.no_grad()
def multi_caption_features(model: torch.nn.Module, tokenizer, captions: Sequence[Sequence[str]],
                           n_captions: int, *, batch_size: int = 32, max_length: int = 512) -> torch.Tensor:
    """Per-layer features of the first `n_captions` captions of every sample, concatenated.

    Args:
        model: a Hugging Face text encoder returning `hidden_states`.
        tokenizer: its tokenizer.
        captions: per sample, a list of at least `n_captions` strings.

    Returns:
        `[N, L, D]` float32: every hidden state mean-pooled over the (non-padding) tokens.
    """
    if n_captions < 1:
        raise ValueError(f"n_captions must be >= 1, got {n_captions}")
    short = [i for i, c in enumerate(captions) if len(c) < n_captions]
    if short:
        raise ValueError(f"sample {short[0]} has {len(captions[short[0]])} captions, fewer than "
                         f"n_captions={n_captions}")
    texts = [" ".join(c[:n_captions]) for c in captions]
    feats = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        out = model(**enc, output_hidden_states=True)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        feats.append(torch.stack([(h * mask).sum(1) / mask.sum(1) for h in out.hidden_states], dim=1))
    return torch.cat(feats).float()
