"""Short videos of moving shapes whose captions describe them, written as real MP4 files.

Every video shows one coloured shape (square, circle or triangle) crossing a dark,
lightly textured background in one direction; its captions name the colour, the
shape and the motion in different words, one attribute or several per caption, so
more captions carry more of what the video shows. Used by `vtalign demo --real` and
the end-to-end tests of `vtalign extract` / `vtalign sweep` (no download, no data set).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from vtalign._atomic import atomic_write, check_out_dir
from vtalign._optional import require
from vtalign.probe._checks import check_int

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 230), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle", "triangle")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
_WHERE = {"left": "the right", "right": "the left", "up": "the bottom", "down": "the top"}


@dataclass
class ShapeClip:
    """One generated video: its id, file, attributes and captions."""
    id: str
    video: str
    colour: str
    shape: str
    motion: str
    captions: list[str]


def captions_for(colour: str, shape: str, motion: str) -> list[str]:
    """Five captions of one clip. The first names the shape and the motion but not
    the colour, the second only the colour, the later ones repeat attributes in
    other words: one caption leaves the colour out, two or more name everything."""
    slide = f"to the {motion}" if motion in ("left", "right") else motion
    return [f"a {shape} moves {motion}",
            f"a {colour} object on a dark background",
            f"the {shape} slides {slide}",
            f"it starts near {_WHERE[motion]} of the frame",
            f"a single {colour} {shape} travels {motion}ward across the picture"]


def render_clip(colour: str, shape: str, motion: str, *, frames: int = 16, size: int = 64,
                seed: int = 0) -> np.ndarray:
    """The frames of one clip, `[frames, size, size, 3]` uint8 (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    bg = (28 + rng.integers(0, 12, size=(size, size, 1))).astype(np.uint8).repeat(3, axis=2)
    dx, dy = MOTIONS[motion]
    r = size // 8
    yy, xx = np.mgrid[0:size, 0:size]
    # a small random offset across the motion keeps clips of one class distinct
    jitter = int(rng.integers(-size // 8, size // 8 + 1))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        s = -1 + 2 * t / max(1, frames - 1)  # -1 -> 1 along the motion
        cx = size / 2 + dx * s * (size / 2 - 1.5 * r) + (jitter if dx == 0 else 0)
        cy = size / 2 + dy * s * (size / 2 - 1.5 * r) + (jitter if dy == 0 else 0)
        if shape == "square":
            mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
        elif shape == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:  # an upward triangle: inside below its apex, between the two slanted sides
            mask = (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
        frame = bg.copy()
        frame[mask] = COLOURS[colour]
        out[t] = frame
    return out


def write_mp4(path: str, frames: np.ndarray, *, fps: int = 8) -> str:
    """Encode `[T, H, W, 3]` uint8 frames (H, W even) as an H.264 MP4, atomically."""
    av = require("av", "video", "writing MP4 files")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.dtype} {frames.shape}")

    def write(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as box:
            stream = box.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            # near-lossless and single-threaded: the same frames give the same bytes
            stream.options = {"crf": "10", "preset": "veryfast"}
            stream.thread_count = 1
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    box.mux(packet)
            for packet in stream.encode():
                box.mux(packet)

    return atomic_write(path, write)


def shapes_video_set(out_dir: str, n: int = 32, *, frames: int = 16, size: int = 64, seed: int = 0) -> list[ShapeClip]:
    """Write `n` clips (`<out_dir>/videos/clip-0000.mp4`, `clip-0001.mp4`, ...) and `<out_dir>/manifest.jsonl`
    (one `{"id", "video", "captions"}` line per clip, video paths relative to out_dir).

    Clips cycle through every colour x shape x motion combination, so each
    attribute is balanced; `seed` picks the background texture and offsets."""
    out_dir = check_out_dir(out_dir, "out_dir")
    check_int("n", n, lo=2)
    check_int("frames", frames, lo=1)
    check_int("size", size, lo=16)
    if size % 2:
        raise ValueError(f"size must be even (H.264 needs even frame sizes), got {size}")
    combos = [(c, s, m) for m in MOTIONS for s in SHAPES for c in COLOURS]
    order = np.random.default_rng(seed).permutation(len(combos))
    clips = []
    for i in range(n):
        colour, shape, motion = combos[order[i % len(combos)]]
        rel = os.path.join("videos", f"clip-{i:04d}.mp4")
        write_mp4(os.path.join(out_dir, rel), render_clip(colour, shape, motion, frames=frames, size=size,
                                                          seed=seed * 100_003 + i))
        clips.append(ShapeClip(f"clip-{i:04d}", rel, colour, shape, motion, captions_for(colour, shape, motion)))
    lines = "".join(json.dumps({"id": c.id, "video": c.video, "captions": c.captions}) + "\n" for c in clips)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(lines)

    atomic_write(os.path.join(out_dir, "manifest.jsonl"), write)
    return clips
