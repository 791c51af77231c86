"""`vtalign sweep`: the frames x captions grid from extracted feature files, for
one model per side or several (a leaderboard in every cell).

Each file is one model at one axis value (`<model>_pool-<p>_numframes-N` or
`..._numcaptions-N`, see `extract_store`). Each file's per-layer kNN lists are
searched once -- one search per layer of every file, whatever the number of
cells and model pairs -- and cached on disk exactly as `vtalign probe` caches them
(`run.cached_layer_lists`: SHA-256 keyed by the file's identity, the layer and the
options; atomic; a corrupt entry is recomputed), so a rerun, or a probe of the
same files into the same folder, searches nothing again.

Every cell (n_f, n_c) is then a leaderboard (`sweep_cells`) of the video models
that have n_f frames against the text models that have n_c captions, from the
lists alone: each model pair's `[Lv, Lt]` scores (equal to
`layerwise_alignment` on the two files), its best layer pair, and -- with
permutations -- its calibrated score, p-value and τ (`vtalign.probe.aristotelian`;
the same permutations, drawn once from `seed`, in every cell and for every pair).
The scaling law is fitted to each model pair's best-pair scores over its cells.
With an output folder the finished cells are checkpointed (`cache/sweep-cells.json`),
so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vtalign._atomic import check_out_dir
from vtalign.probe._checks import check_backend, check_flag, check_int
from vtalign.probe.alignment import _check_k
from vtalign.probe.extract_store import NAME_RE, feature_ids, parse_feature_name
from vtalign.probe.features import open_features
from vtalign.probe.leaderboard import Leaderboard, check_leaderboard_options
from vtalign.probe.metrics import KNN_METRICS
from vtalign.probe.run import _file_id, cached_layer_lists
from vtalign.probe.scaling import ScalingFit
from vtalign.probe.sweep import Sweep
from vtalign.probe.sweep_cells import score_cells

AxisModels = dict[str, dict[int, str]]  # model label -> {count: file}


def axis_models(inputs: Sequence[str], axis: str, option: str) -> AxisModels:
    """{model: {count: path}} of the feature files given as files and/or folders (a
    folder contributes every file named `..._num<axis>-N.<ext>`). A model is the
    `<model>` part of the name, with `_pool-<p>` added when one model comes with two
    pools. Refuses a file whose name carries no count of this axis and two files of
    one model with one count."""
    if isinstance(inputs, str) or not inputs:
        raise ValueError(f"{option}: give at least one feature file or folder")
    paths = []
    for p in inputs:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if (m := NAME_RE.match(f)) and m["axis"] == axis)
            if not found:
                raise ValueError(f"{option}: folder {p!r} holds no files named <model>_pool-<avg|cls>_num{axis}-N.pt")
            paths += found
        elif not os.path.exists(p):
            raise ValueError(f"{option}: no such file or folder: {p}")
        else:
            paths.append(p)
    by_model: dict[tuple[str, str], dict[int, str]] = {}
    for p in paths:
        info = parse_feature_name(p)
        if info is None or info["axis"] != axis:
            raise ValueError(f"{option}: {os.path.basename(p)!r} is not named <model>_pool-<avg|cls>_num{axis}-N"
                             f".<pt|safetensors|...>, so its {axis} count is unknown")
        if info["count"] < 1:
            raise ValueError(f"{option}: {os.path.basename(p)!r}: the count must be >= 1")
        files = by_model.setdefault((info["model"], info["pool"]), {})
        if info["count"] in files:
            raise ValueError(f"{option}: two files of {info['model']} (pool {info['pool']}) for {info['count']} "
                             f"{axis}: {files[info['count']]} and {p}")
        files[info["count"]] = p
    names = [m for m, _ in by_model]
    return {(m if names.count(m) == 1 else f"{m}_pool-{q}"): dict(sorted(f.items()))
            for (m, q), f in sorted(by_model.items())}


@dataclass
class PairSweep:
    """One (video model, text model) of a sweep: its grid (`sweep`, best-pair raw scores
    and, for a single pair, every cell's `[Lv, Lt]` scores), the calibration of each
    cell (NaN without permutations), the fit (None when its grid is too small,
    `fit_skipped` says why) and its files per count."""
    video_model: str
    text_model: str
    sweep: Sweep
    calibrated: np.ndarray
    p_values: np.ndarray
    taus: np.ndarray
    fit: ScalingFit | None
    fit_skipped: str | None
    video_files: dict[int, str]
    text_files: dict[int, str]


@dataclass
class FileSweep:
    """A sweep of feature files: every model pair's grid and fit (`pairs`), every
    cell's leaderboard (`boards`, keyed by (frames, captions)), N, and the number of
    kNN searches run (`searches`) and served from the cache (`cached`)."""
    metric: str
    k: int
    n: int
    permutations: int
    video_models: AxisModels
    text_models: AxisModels
    pairs: dict[tuple[str, str], PairSweep]
    boards: dict[tuple[int, int], Leaderboard]
    searches: int
    cached: int

    def only_pair(self) -> PairSweep:
        """The model pair of a sweep with one model per side."""
        if len(self.pairs) != 1:
            raise ValueError(f"this sweep has {len(self.pairs)} model pairs; pick one from .pairs")
        return next(iter(self.pairs.values()))

    # one model per side: the pair's own fields, as the single-pair sweep reports them
    sweep = property(lambda self: self.only_pair().sweep)
    fit = property(lambda self: self.only_pair().fit)
    fit_skipped = property(lambda self: self.only_pair().fit_skipped)
    video_files = property(lambda self: self.only_pair().video_files)
    text_files = property(lambda self: self.only_pair().text_files)

    @property
    def frames(self) -> list[int]:
        return sorted({c for f in self.video_models.values() for c in f})

    @property
    def captions(self) -> list[int]:
        return sorted({c for f in self.text_models.values() for c in f})


def _check_files(models: AxisModels, key: str, side: str, n_want: int | None, ids_want: list[str] | None):
    """Check every file of one side -- N, each model's layer count, the recorded ids --
    closing each before the next opens (a sweep of many models has more files than a
    process may hold open). Returns (N, ids)."""
    n, ids, first = n_want, ids_want, None
    for model, files in models.items():
        layers = None
        for path in files.values():
            with open_features(path, key=key) as ff:
                count, n_path = len(ff), ff.n
            if n is None:
                n, first = n_path, path
            elif n_path != n:
                raise ValueError(f"{path} has N={n_path} samples, but {first or 'the video files have'} N={n}")
            if layers is None:
                layers = count
            elif count != layers:
                raise ValueError(f"{side}: {path} has {count} layers, the other {model} files {layers}")
            got = feature_ids(path)
            if got is None:
                continue
            if ids is None:
                ids = got
            elif got != ids:
                bad = next((i for i, (a, b) in enumerate(zip(got, ids)) if a != b), min(len(got), len(ids)))
                raise ValueError(f"{path}: its samples are not in the same order as the other files' (first "
                                 f"difference at row {bad}: {got[bad] if bad < len(got) else '-'!r} vs "
                                 f"{ids[bad] if bad < len(ids) else '-'!r}); extract both sides from one manifest")
    return n, ids


def sweep_files(video_files: Sequence[str], text_files: Sequence[str], *, metric: str = "mutual_knn", k: int = 10,
                out_dir: str | None = None, key: str = "feats", backend: str = "auto",
                device: str | torch.device | None = None, progress: bool = True, permutations: int = 200,
                alpha: float = 0.05, smax: float | None | str = "auto", agg: str = "max",
                seed: int = 0) -> FileSweep:
    """The frames x captions grid of extracted feature files (see the module docstring).

    Args:
        video_files: `<model>_pool-<p>_numframes-N` files and/or folders holding them,
            of one or several video models.
        text_files: `..._numcaptions-N` files and/or folders, of one or several text models.
        metric: a kNN metric (`KNN_METRICS`); the lists are what is reused.
        out_dir: folder of the kNN list cache and the cell checkpoint (`out_dir/cache`);
            None: neither.
        device: where the searches run ("cuda": one layer on the GPU at a time).
        permutations: K of each cell's permutation null (0: raw scores only); alpha,
            smax ("auto": 1, k for lcs_knn; None: relu(T - τ)), agg ("max" | "mean"
            over layer pairs) and seed as in `vtalign.probe.aristotelian`.

    Returns:
        A `FileSweep`: per model pair its grid, calibration and scaling-law fit; per
        cell the leaderboard of the models present there.
    """
    if metric not in KNN_METRICS:
        raise ValueError(f"metric must be one of {KNN_METRICS} (the sweep reuses kNN lists), got {metric!r}")
    check_int("k", k, lo=1)
    smax_v = check_leaderboard_options(metric, k, permutations, alpha, smax, agg, seed)
    if not isinstance(agg, str):
        raise TypeError(f"agg must be 'max' or 'mean' for a sweep, got {type(agg).__name__}")
    check_backend(backend)
    check_flag("progress", progress)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, "out_dir")
    vm = axis_models(video_files, "frames", "video files")
    tm = axis_models(text_files, "captions", "--text")
    n, ids = _check_files(vm, key, "video", None, None)
    _check_files(tm, key, "text", n, ids)
    _check_k(k, n, [metric])
    cache = os.path.join(out_dir, "cache") if out_dir else None
    opts = f"False|None|{key}"  # `vtalign probe`'s options string without --concat/--outliers: one shared cache
    searched = {"new": 0, "cached": 0}

    def lists(path: str, label: str) -> torch.Tensor:
        # one file at a time, each layer read once: FeatureFile.layer refuses NaN/Inf naming the
        # file and layer as the search reads it; then the file is closed, so its mapped pages
        # are released and the sweep holds one file, not the grid's
        before = _count_cache(cache)
        with open_features(path, key=key) as ff:
            idx = cached_layer_lists(ff, _file_id(path), k, normalize=True, options=opts, cache_dir=cache,
                                     backend=backend, label=label, progress=progress, device=device)
        new = _count_cache(cache) - before if cache else len(idx)
        searched["new"] += new
        searched["cached"] += len(idx) - new
        return idx

    lv = {(m, c): lists(p, f"{m}, {c} frames") for m, files in vm.items() for c, p in files.items()}
    lt = {(m, c): lists(p, f"{m}, {c} captions") for m, files in tm.items() for c, p in files.items()}
    options = dict(metric=metric, k=k, key=key, permutations=permutations, alpha=alpha, smax=smax_v, agg=agg,
                   seed=seed, files={side: {m: {str(c): _file_id(p) for c, p in f.items()} for m, f in models.items()}
                                     for side, models in (("video", vm), ("text", tm))})
    keep = len(vm) * len(tm) == 1  # one pair: every cell's [Lv, Lt] matrix is part of the report
    boards = score_cells(lv, lt, vm, tm, metric=metric, k=k, n=n, permutations=permutations, alpha=alpha,
                         smax=smax_v, agg=agg, seed=seed, backend=backend, keep_scores=keep,
                         checkpoint=os.path.join(cache, "sweep-cells.json") if cache else None, options=options,
                         progress=progress)
    pairs = {(a, b): _pair_sweep(a, b, vm[a], tm[b], boards, metric, k) for a in vm for b in tm}
    return FileSweep(metric, k, n, permutations, vm, tm, pairs, boards, searched["new"], searched["cached"])


def _pair_sweep(a: str, b: str, vfiles: dict[int, str], tfiles: dict[int, str],
                boards: dict[tuple[int, int], Leaderboard], metric: str, k: int) -> PairSweep:
    cells = [(f, c, boards[(f, c)].pairs[(a, b)]) for f in vfiles for c in tfiles]
    mats = [p.scores for _, _, p in cells if p.scores is not None]
    sweep = Sweep(np.array([f for f, _, _ in cells], dtype=float), np.array([c for _, c, _ in cells], dtype=float),
                  np.array([p.raw for *_, p in cells]), [p.best for *_, p in cells], metric, k,
                  mats if len(mats) == len(cells) else [])
    try:
        fit, why = sweep.fit(), None
    except ValueError as exc:  # a grid too small (or too flat) to fit is still a result
        fit, why = None, str(exc)
    col = {name: np.array([getattr(p, name) for *_, p in cells]) for name in ("calibrated", "p_value", "tau")}
    return PairSweep(a, b, sweep, col["calibrated"], col["p_value"], col["tau"], fit, why, vfiles, tfiles)


def _count_cache(cache: str | None) -> int:
    if cache is None or not os.path.isdir(cache):
        return 0
    return sum(1 for f in os.listdir(cache) if f.startswith("knn-") and f.endswith(".pt"))


__all__ = ["FileSweep", "PairSweep", "axis_models", "sweep_files"]
