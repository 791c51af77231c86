"""`vtalign sweep`: the frames x captions grid from extracted feature files.

Each file is one axis value (`..._numframes-N` or `..._numcaptions-N`, see
`extract_store`). Each file's per-layer kNN lists are searched once -- F·Lv + C·Lt
searches for the whole grid -- and cached on disk exactly as `vtalign probe`
caches them (`run.cached_layer_lists`: SHA-256 keyed by the file's identity, the
layer and the options; atomic; a corrupt entry is recomputed), so a rerun, or a
probe of the same files into the same folder, searches nothing again. Every cell
is then scored from two files' lists (`list_scores`), and the scaling law is fitted
to the cells' best-pair scores.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vtalign._atomic import check_out_dir
from vtalign._progress import progress_bar
from vtalign.probe._checks import check_backend, check_flag, check_int
from vtalign.probe.alignment import _check_k, _result
from vtalign.probe.extract_store import NAME_RE, feature_ids, parse_feature_name
from vtalign.probe.features import open_features
from vtalign.probe.metrics import KNN_METRICS, list_scores
from vtalign.probe.run import _file_id, cached_layer_lists
from vtalign.probe.scaling import ScalingFit
from vtalign.probe.sweep import Sweep


def axis_files(inputs: Sequence[str], axis: str, option: str) -> dict[int, str]:
    """{count: path} of the feature files given as files and/or folders (a folder
    contributes every file named `..._num<axis>-N.<ext>`). Refuses a file whose
    name carries no count of this axis, two files with one count, and files of
    different models or pools mixed on one axis."""
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
    out: dict[int, str] = {}
    models = set()
    for p in paths:
        info = parse_feature_name(p)
        if info is None or info["axis"] != axis:
            raise ValueError(f"{option}: {os.path.basename(p)!r} is not named <model>_pool-<avg|cls>_num{axis}-N"
                             f".<pt|safetensors|...>, so its {axis} count is unknown")
        if info["count"] < 1:
            raise ValueError(f"{option}: {os.path.basename(p)!r}: the count must be >= 1")
        if info["count"] in out:
            raise ValueError(f"{option}: two files for {info['count']} {axis}: {out[info['count']]} and {p}")
        out[info["count"]] = p
        models.add((info["model"], info["pool"]))
    if len(models) > 1:
        raise ValueError(f"{option}: files of several models/pools mixed on one axis: "
                         f"{', '.join(f'{m} (pool {q})' for m, q in sorted(models))}")
    return dict(sorted(out.items()))


@dataclass
class FileSweep:
    """A sweep of feature files: the grid (`sweep`, with every cell's `[Lv, Lt]`
    scores), the fit (None when the grid is too small, `fit_skipped` says why),
    the files per count, N, and the number of kNN searches run (not from the cache)."""
    sweep: Sweep
    fit: ScalingFit | None
    fit_skipped: str | None
    video_files: dict[int, str]
    text_files: dict[int, str]
    n: int
    searches: int
    cached: int


def _open_checked(files: dict[int, str], key: str, side: str, n_want: int | None, ids_want: list[str] | None):
    """Open every file of one axis, checking N, the layer count and the recorded ids."""
    out, n, layers = {}, n_want, None
    ids = ids_want
    for c, path in files.items():
        ff = open_features(path, key=key)
        out[c] = ff
        if n is None:
            n = ff.n
        elif ff.n != n:
            raise ValueError(f"{path} has N={ff.n} samples, but {next(iter(files.values()))} has N={n}")
        if layers is None:
            layers = len(ff)
        elif len(ff) != layers:
            raise ValueError(f"{side}: {path} has {len(ff)} layers, the other {side} files {layers}")
        got = feature_ids(path)
        if got is not None:
            if ids is None:
                ids = got
            elif got != ids:
                bad = next((i for i, (a, b) in enumerate(zip(got, ids)) if a != b), min(len(got), len(ids)))
                raise ValueError(f"{path}: its samples are not in the same order as the other files' (first "
                                 f"difference at row {bad}: {got[bad] if bad < len(got) else '-'!r} vs "
                                 f"{ids[bad] if bad < len(ids) else '-'!r}); extract both sides from one manifest")
    return out, n, ids


def sweep_files(video_files: Sequence[str], text_files: Sequence[str], *, metric: str = "mutual_knn", k: int = 10,
                out_dir: str | None = None, key: str = "feats", backend: str = "auto",
                device: str | torch.device | None = None, progress: bool = True) -> FileSweep:
    """The frames x captions grid of extracted feature files (see the module docstring).

    Args:
        video_files: `..._numframes-N` files and/or folders holding them.
        text_files: `..._numcaptions-N` files and/or folders.
        metric: a kNN metric (`KNN_METRICS`); the lists are what is reused.
        out_dir: folder of the kNN list cache (`out_dir/cache`); None: no cache.
        device: where the searches run ("cuda": one layer on the GPU at a time).

    Returns:
        A `FileSweep`: per-cell `[Lv, Lt]` scores, best pairs and the scaling-law fit.
    """
    if metric not in KNN_METRICS:
        raise ValueError(f"metric must be one of {KNN_METRICS} (the sweep reuses kNN lists), got {metric!r}")
    check_int("k", k, lo=1)
    check_backend(backend)
    check_flag("progress", progress)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, "out_dir")
    vf = axis_files(video_files, "frames", "video files")
    tf = axis_files(text_files, "captions", "--text")
    opened_v, n, ids = _open_checked(vf, key, "video", None, None)
    opened_t, _, _ = _open_checked(tf, key, "text", n, ids)
    cache = os.path.join(out_dir, "cache") if out_dir else None
    opts = f"False|None|{key}"  # `vtalign probe`'s options string without --concat/--outliers: one shared cache
    try:
        _check_k(k, n, [metric])
        searched = {"new": 0, "cached": 0}

        def lists(ff, label):
            # one file at a time, each layer read once: FeatureFile.layer refuses NaN/Inf naming the
            # file and layer as the search reads it; then the file is closed, so its mapped pages
            # are released and the sweep holds one file, not the grid's
            before = _count_cache(cache)
            idx = cached_layer_lists(ff, _file_id(ff.path), k, normalize=True, options=opts, cache_dir=cache,
                                     backend=backend, label=label, progress=progress, device=device)
            new = _count_cache(cache) - before if cache else len(ff)
            searched["new"] += new
            searched["cached"] += len(ff) - new
            ff.close()
            return idx

        lv = {c: lists(ff, f"{c} frames") for c, ff in opened_v.items()}
        lt = {c: lists(ff, f"{c} captions") for c, ff in opened_t.items()}
    finally:
        for ff in (*opened_v.values(), *opened_t.values()):
            ff.close()
    nf, nc, sc, best, mats = [], [], [], [], []
    with progress_bar("sweep cells", len(lv) * len(lt), enabled=progress, unit="cell") as bar:
        for f, a in lv.items():
            for c, b in lt.items():
                r = _result(list_scores(metric, a, b, backend=backend), metric, k, n, False)
                nf.append(f)
                nc.append(c)
                sc.append(r.best_score)
                best.append(r.best)
                mats.append(r.scores)
                bar.update()
    sweep = Sweep(np.array(nf, dtype=float), np.array(nc, dtype=float), np.array(sc), best, metric, k, mats)
    try:
        fit, why = sweep.fit(), None
    except ValueError as exc:  # a grid too small (or too flat) to fit is still a result
        fit, why = None, str(exc)
    return FileSweep(sweep, fit, why, vf, tf, n, searched["new"], searched["cached"])


def _count_cache(cache: str | None) -> int:
    if cache is None or not os.path.isdir(cache):
        return 0
    return sum(1 for f in os.listdir(cache) if f.startswith("knn-") and f.endswith(".pt"))
