"""Frames x captions sweeps: the measurements a test-time scaling law is fitted to.

A cell (n_f, n_c) scores every video layer against every text layer. For the kNN
metrics the per-layer neighbour lists depend on one axis value only, so each
frame count's lists and each caption count's lists are searched once and every
cell is scored from them (`list_scores`): F·Lv + C·Lt searches instead of the
F·C·(Lv + Lt) of a per-cell `layerwise_alignment` loop, with identical scores
(the same searches, only not repeated). CKA and CKNNA need the features of both
sides per cell and are computed per cell.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vtalign._progress import progress_bar
from vtalign.ops._common import check_int
from vtalign.probe._checks import check_backend, check_flag
from vtalign.probe.alignment import _check_k, _result, as_layer_list, layerwise_alignment
from vtalign.probe.metrics import KNN_METRICS, check_metric, list_scores
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
    layer_scores: list[torch.Tensor] = field(default_factory=list)  # per cell `[Lv, Lt]`, when kept

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


def axis_lists(feats, k: int, *, backend: str = "auto", device: str | torch.device | None = None,
               label: str = "kNN", progress: bool = False) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` (CPU) of one axis value's features (`[N, L, D]`, a
    list of `[N, D_l]` layers or a `FeatureFile`), one search per layer; with
    `device` each layer is moved there for its own search only."""
    from vtalign.probe.run import cached_layer_lists

    layers = as_layer_list(label, feats)
    _check_k(k, len(layers[0]), ["mutual_knn"])  # k against N before any search
    return cached_layer_lists(layers, "", k, normalize=True, options="", cache_dir=None, backend=backend,
                              label=label, progress=progress, device=device)


def scaling_sweep(video_features: Callable[[int], torch.Tensor], text_features: Callable[[int], torch.Tensor],
                  frames: Sequence[int], captions: Sequence[int], *, metric: str = "mutual_knn", k: int = 10,
                  backend: str = "auto", progress: bool = True, device: str | torch.device | None = None,
                  keep_layer_scores: bool = False) -> Sweep:
    """Layer-pair alignment at every (n_frames, n_captions) of the grid.

    Args:
        video_features: n_frames -> `[N, Lv, D]` features (e.g. `multi_frame_features`).
        text_features: n_captions -> `[N, Lt, D]` features.
        frames, captions: the grid axes.
        device: where the kNN searches run ("cuda": one layer on the GPU at a time;
            the lists, and every score, come back to the CPU).
        keep_layer_scores: keep every cell's `[Lv, Lt]` matrix in `Sweep.layer_scores`.

    Returns:
        A `Sweep` holding the best-pair score of each cell. Each axis value's
        features are computed once; for the kNN metrics so are its neighbour
        lists (F·Lv + C·Lt searches), and the cells are scored from the lists.
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
    check_flag("keep_layer_scores", keep_layer_scores)
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None
    nf, nc, sc, best, mats = [], [], [], [], []
    if metric in KNN_METRICS:
        lists_t = {}
        for c in captions:
            lists_t[c] = axis_lists(text_features(c), k, backend=backend, device=device, label="text_features")
        n = next(iter(lists_t.values())).shape[1]
    else:
        text = {c: text_features(c) for c in captions}
    with progress_bar("sweep", len(frames) * len(captions), enabled=progress, unit="cell") as bar:
        for f in frames:
            v = video_features(f)
            if metric in KNN_METRICS:
                lv = axis_lists(v, k, backend=backend, device=device, label="video_features")
                if lv.shape[1] != n:
                    raise ValueError(f"video_features({f}) has N={lv.shape[1]} samples, text features N={n}")
                del v
            for c in captions:
                if metric in KNN_METRICS:
                    r = _result(list_scores(metric, lv, lists_t[c], backend=backend), metric, k, n, False)
                else:
                    r = layerwise_alignment(v, text[c], metric=metric, k=k, backend=backend)
                nf.append(f)
                nc.append(c)
                sc.append(r.best_score)
                best.append(r.best)
                if keep_layer_scores:
                    mats.append(r.scores)
                bar.update()
    return Sweep(np.array(nf, dtype=float), np.array(nc, dtype=float), np.array(sc), best, metric, k, mats)
