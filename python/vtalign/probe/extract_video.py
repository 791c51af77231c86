"""`vtalign extract video`: per-layer features of every video at every frame count.

For a count n_f the video's frames are sampled uniformly (`uniform_indices`),
resized and normalised by the model's own image processor, and encoded:

- a video model with a native window of n_o frames sees sub-clips of n_o
  (`subclips`: fewer frames are repeated to fill the window, more are split into
  consecutive clips) and its per-layer features are averaged over the clips
  (`multi_frame_features`);
- an image model sees the frames one by one: `image_frames="mean"` averages the
  per-frame features over the n_f frames, `"first"` encodes the first frame only
  (the paper's single-frame baseline; its only count is 1).

Every hidden state is pooled (`avg`: mean over tokens, `cls`: the first token),
giving one `[N, L, D]` file per count (see `extract_store` for names and resuming).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from vtalign._optional import require
from vtalign.probe._checks import check_choice
from vtalign.probe.encoders import multi_frame_features
from vtalign.probe.extract_loop import check_batch_args, output_paths, run_extraction
from vtalign.probe.extract_store import FORMATS, feature_file_name, run_key
from vtalign.probe.hf_models import POOLS, VisualEncoder, load_visual_encoder
from vtalign.probe.manifest import Sample
from vtalign.probe.video_decode import sampled_frames

IMAGE_FRAMES = ("mean", "first")


def _file_ids(paths) -> list[str]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}")
    return out


def model_fingerprint(name: str) -> list[str]:
    """What identifies the model's weights: its folder's files (size, mtime), or the hub id."""
    if not os.path.isdir(name):
        return [name]
    return _file_ids(sorted(os.path.join(name, f) for f in os.listdir(name)
                            if os.path.isfile(os.path.join(name, f))))


def check_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA device is available to torch here")
    return dev


@torch.no_grad()
def encode_frames(enc: VisualEncoder, pixels: torch.Tensor, image_frames: str = "mean",
                  chunk: int = 64) -> torch.Tensor:
    """`[B, n, C, h, w]` processed frames of B videos -> `[B, L, D]` float32."""
    b, n = pixels.shape[:2]
    if enc.native is not None:
        return multi_frame_features(enc.encode, pixels, n, enc.native, batch_size=b)
    if image_frames == "first":
        return enc.encode(pixels[:, 0])
    flat = pixels.flatten(0, 1)  # frames of all videos, encoded `chunk` images at a time
    feats = torch.cat([enc.encode(flat[s:s + chunk]) for s in range(0, flat.shape[0], chunk)])
    return feats.view(b, n, *feats.shape[1:]).mean(1)


def video_batch_features(enc: VisualEncoder, batch: Sequence[Sample], counts: Sequence[int],
                         image_frames: str = "mean") -> dict[int, torch.Tensor]:
    """{n_f: `[b, L, D]`} for one batch of samples, each video decoded once for all counts.

    Each video's frames go through the processor as soon as it is decoded, so
    memory holds one video's full-resolution frames, and the batch's small ones."""
    pixels: dict[int, list[torch.Tensor]] = {c: [] for c in counts}
    for s in batch:
        frames = sampled_frames(s.video, list(counts))
        for c in counts:
            pixels[c].append(enc.pixels(frames[c]))
        del frames
    return {c: encode_frames(enc, torch.stack(pixels[c]), image_frames) for c in counts}


def extract_video(samples: Sequence[Sample], model: str, frames: Sequence[int], out_dir: str, *,
                  name: str | None = None, pool: str = "avg", image_frames: str = "mean", fmt: str = ".pt",
                  batch_size: int = 8,
                  device: str | torch.device = "cpu", progress: bool = True) -> list[str]:
    """Write `<model>_pool-<pool>_numframes-<n_f><fmt>` (`feats` `[N, L, D]`, `ids`) for every n_f.

    Args:
        samples: the videos, in the order of the output rows (`read_manifest`).
        name: the `<model>` part of the file names (default: the folder's name or the hub id).
        model: a local model folder or a hub id in the local cache (never downloaded).
        frames: the frame counts n_f.
        out_dir: where the files (and, while running, `.partial/`) go.
        batch_size: videos per batch; memory holds one batch's frames and features.
        device: where the model runs ("cpu", "cuda", ...).

    Returns:
        The files written, in ascending n_f.
    """
    counts = check_batch_args(samples, out_dir, frames, batch_size, "frames")
    check_choice("pool", pool, POOLS)
    check_choice("image_frames", image_frames, IMAGE_FRAMES)
    check_choice("fmt", fmt, FORMATS)
    if any(s.video is None for s in samples):
        raise ValueError("samples: every sample needs a video file")
    dev = check_device(device)
    require("av", "video", "decoding videos")  # before the model loads: the cheap check first
    enc = load_visual_encoder(model, pool=pool, device=dev)
    if enc.native is None and image_frames == "first" and counts != [1]:
        raise ValueError(f"frames: image_frames='first' encodes the first frame only, so its one count is 1; "
                         f"got {counts}")
    key = run_key(model=model_fingerprint(model), pool=pool, image_frames=image_frames if enc.native is None else "",
                  ids=[s.id for s in samples], videos=_file_ids(s.video for s in samples), batch_size=batch_size,
                  axis="frames")
    paths = output_paths(out_dir, {c: feature_file_name(name or model, pool, "frames", c, fmt) for c in counts})
    meta = dict(model=str(model), pool=pool, axis="frames", kind=enc.kind,
                native_frames=str(enc.native or ""), image_frames=image_frames if enc.native is None else "")
    return run_extraction(samples, counts, paths, lambda b: video_batch_features(enc, b, counts, image_frames),
                          out_dir=out_dir, key=key, batch_size=batch_size, meta=meta, label="video",
                          progress=progress)
