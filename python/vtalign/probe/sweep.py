"""Frames x captions sweeps: the measurements a test-time scaling law is fitted to."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vtalign._progress import progress_bar
from vtalign.ops._common import check_int
from vtalign.probe._checks import check_backend, check_flag
from vtalign.probe.alignment import layerwise_alignment
from vtalign.probe.metrics import check_metric
from vtalign.probe.scaling import ScalingFit, fit_scaling_law


@dataclass
class Sweep:
    """Best-pair alignment for every (frames, captions) cell.

    Attributes:
        n_frames, n_captions, scores: equal-length 1-D arrays, one entry per cell.
        best_pairs: the best layer pair of each cell.
    """
    n_frames: np.ndarray
    n_captions: np.ndarray
    scores: np.ndarray
    best_pairs: list[tuple[int, int]]
    metric: str
    k: int

    def fit(self) -> ScalingFit:
        return fit_scaling_law(self.n_frames, self.n_captions, self.scores)

    def grid_markdown(self, digits: int = 3) -> str:
        fs = sorted(set(self.n_frames.tolist()))
        cs = sorted(set(self.n_captions.tolist()))
        cell = {(f, c): s for f, c, s in zip(self.n_frames.tolist(), self.n_captions.tolist(), self.scores.tolist())}
        lines = ["| frames \\ captions | " + " | ".join(str(int(c)) for c in cs) + " |",
                 "|---|" + "---|" * len(cs)]
        for f in fs:
            lines.append(f"| {int(f)} | " + " | ".join(f"{cell[(f, c)]:.{digits}f}" for c in cs) + " |")
        return "\n".join(lines)


def scaling_sweep(video_features: Callable[[int], torch.Tensor], text_features: Callable[[int], torch.Tensor],
                  frames: Sequence[int], captions: Sequence[int], *, metric: str = "mutual_knn", k: int = 10,
                  backend: str = "auto", progress: bool = True) -> Sweep:
    """Layer-pair alignment at every (n_frames, n_captions) of the grid.

    Args:
        video_features: n_frames -> `[N, Lv, D]` features (e.g. `multi_frame_features`).
        text_features: n_captions -> `[N, Lt, D]` features.
        frames, captions: the grid axes.

    Returns:
        A `Sweep` holding the best-pair score of each cell (features of each axis
        value are computed once and reused across the other axis).
    """
    for name, counts in (("frames", frames), ("captions", captions)):
        if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or not counts:
            raise ValueError(f"{name} must be a non-empty sequence of counts, got {counts!r}")
        for i, c in enumerate(counts):
            check_int(f"{name}[{i}]", c, lo=1)
    check_metric(metric)
    check_int("k", k, lo=1)
    check_backend(backend)
    check_flag("progress", progress)
    text = {c: text_features(c) for c in captions}
    nf, nc, sc, best = [], [], [], []
    with progress_bar("sweep", len(frames) * len(captions), enabled=progress, unit="cell") as bar:
        for f in frames:
            v = video_features(f)
            for c in captions:
                r = layerwise_alignment(v, text[c], metric=metric, k=k, backend=backend)
                nf.append(f)
                nc.append(c)
                sc.append(r.best_score)
                best.append(r.best)
                bar.update()
    return Sweep(np.array(nf, dtype=float), np.array(nc, dtype=float), np.array(sc), best, metric, k)
