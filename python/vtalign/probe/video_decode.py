"""Decoding the frames `vtalign extract video` needs, with PyAV (`pip install "vtalign[video]"`).

A video is decoded once per extraction, front to back, keeping only the frames
that some frame count samples (`uniform_indices(T, n_f)` for every n_f), so
memory holds those frames, never the whole video.
"""
from __future__ import annotations

import numpy as np

from vtalign._optional import require
from vtalign.probe.encoders import uniform_indices


def _frame_count(av, path: str) -> int:
    """Frames in the first video stream: the container's count, else a demux pass
    (packets of a video stream are frames; nothing is decoded)."""
    with av.open(path) as box:
        stream = box.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        return sum(1 for p in box.demux(stream) if p.size > 0)


def sampled_frames(path: str, counts: list[int]) -> dict[int, np.ndarray]:
    """For each count n in `counts`, n frames spread uniformly over the video
    (`uniform_indices`), as `[n, H, W, 3]` uint8 RGB.

    A video shorter than n frames repeats frames (the indices round to the same
    frame); a container whose frame count overstates the decodable frames gives
    its last decoded frame for the missing ones. Raises ValueError naming the
    file when it cannot be opened or has no video stream."""
    av = require("av", "video", "decoding videos")
    try:
        total = _frame_count(av, path)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ValueError(f"{path}: cannot read a video stream: {exc}") from None
    if total < 1:
        raise ValueError(f"{path}: the video has no frames")
    picks = {n: uniform_indices(total, n).tolist() for n in counts}
    wanted = sorted({i for p in picks.values() for i in p})
    kept: dict[int, np.ndarray] = {}
    last = None
    with av.open(path) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        j = 0
        for i, frame in enumerate(box.decode(stream)):
            if j >= len(wanted):
                break
            last = frame
            if i == wanted[j]:
                kept[i] = frame.to_ndarray(format="rgb24")
                j += 1
    if last is None:
        raise ValueError(f"{path}: no frame could be decoded")
    fill = kept[max(kept)] if kept else last.to_ndarray(format="rgb24")
    return {n: np.stack([kept.get(i, fill) for i in p]) for n, p in picks.items()}
