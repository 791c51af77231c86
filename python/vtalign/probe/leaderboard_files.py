"""`vtalign probe --a FILES... --b FILES...`: a leaderboard of feature files.

Each argument is a feature file, a folder (its feature files, sorted) or a
manifest (`.txt`: one path per line, relative to the manifest's folder, `#`
comments). Each (file, layer) kNN search runs once and is cached in
`out_dir/cache` under the same keys as `vtalign probe A B` (`probe.run`), so
pair runs and leaderboards share searches. After each model of B the finished
pairs are written to `leaderboard.json` (atomically, marked incomplete); a rerun
with the same options and files keeps them and computes only the rest.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from vtalign._atomic import check_out_dir, write_json, write_text
from vtalign._progress import progress_bar
from vtalign.probe._checks import check_backend, check_flag
from vtalign.probe.alignment import check_layer_options, clamp_layers, read_layers
from vtalign.probe.features import open_features
from vtalign.probe.leaderboard import Leaderboard, PairResult, check_leaderboard_options, leaderboard_from_lists
from vtalign.probe.metrics import USES_K
from vtalign.probe.report import best_cell, heatmap_png, plots_unavailable
from vtalign.probe.run import _file_id, cached_layer_lists

FEATURE_EXTS = (".pt", ".pth", ".npy", ".npz", ".safetensors")
MANIFEST_EXTS = (".txt", ".lst")


def expand_models(items: Sequence[str], name: str) -> dict[str, str]:
    """{model name: feature file} from files, folders and manifests, in the order given.
    A model is named after its file without the extension (with its folder when two
    files share a name); a folder without feature files or a repeated file is an error."""
    if isinstance(items, str) or not items:
        raise ValueError(f"{name} must list at least one feature file, folder or manifest")
    paths: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(FEATURE_EXTS)
                           and os.path.isfile(os.path.join(item, f)))
            if not found:
                raise ValueError(f"{name}: folder {item} holds no feature files ({', '.join(FEATURE_EXTS)})")
            paths += found
        elif item.lower().endswith(MANIFEST_EXTS):
            with open(item) as f:
                lines = [ln.split("#", 1)[0].strip() for ln in f]
            listed = [ln if os.path.isabs(ln) else os.path.join(os.path.dirname(item), ln) for ln in lines if ln]
            if not listed:
                raise ValueError(f"{name}: manifest {item} lists no files")
            paths += listed
        else:
            paths.append(item)
    out: dict[str, str] = {}
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    for p, stem in zip(paths, stems):
        label = stem if stems.count(stem) == 1 else os.path.join(os.path.basename(os.path.dirname(p)), stem)
        if label in out:
            raise ValueError(f"{name}: {p} and {out[label]} are both named {label!r} (the same file twice?)")
        out[label] = p
    return out


def _options(metric, k, normalize, key, outliers, permutations, alpha, smax, agg, seed, files) -> dict:
    return dict(metric=metric, k=k, normalize=normalize, key=key, outliers=outliers, permutations=permutations,
                alpha=alpha, smax=smax, agg=agg, seed=seed, files=files)


def _resume(path: str, options: dict, n: int) -> Leaderboard | None:
    """The pairs of an earlier run in `path` when it ran with exactly these options and files."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("options") != json.loads(json.dumps(options)):
        return None
    board = Leaderboard(options["metric"], options["k"], n, options["agg"], options["alpha"], options["smax"],
                        options["permutations"], options["seed"], old["models_a"], old["models_b"])
    for p in old.get("pairs", []):
        board.pairs[(p["model_a"], p["model_b"])] = PairResult.from_dict(p)
    return board


def _report(board: Leaderboard, options: dict, complete: bool) -> dict:
    return dict(board.to_dict(), options=options, complete=complete)


def leaderboard_files(paths_a: Sequence[str], paths_b: Sequence[str], *, metric: str = "mutual_knn", k: int = 10,
                      out_dir: str | None = None, normalize: bool = True, key: str = "feats",
                      outliers: str | None = None, permutations: int = 200, alpha: float = 0.05,
                      smax: float | None | str = "auto", agg: str = "max", seed: int = 0, backend: str = "auto",
                      progress: bool = True, device: str | torch.device | None = None) -> tuple[Leaderboard, list[str]]:
    """Leaderboard of every feature file of A against every one of B (see the module docstring).

    Returns:
        (the `Leaderboard`, the files written: leaderboard.md, leaderboard.json and,
        with matplotlib, leaderboard.png -- the models x models heat map of the
        calibrated score, or of the raw score with `permutations=0`).
    """
    check_layer_options([metric], k, normalize=normalize, concat=False, outliers=outliers, backend=backend)
    smax_v = check_leaderboard_options(metric, k, permutations, alpha, smax, agg, seed)
    if not isinstance(agg, str):
        raise TypeError(f"agg must be 'max' or 'mean' for files, got {type(agg).__name__}")
    check_flag("progress", progress)
    check_backend(backend)
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, "out_dir")
    files_a, files_b = expand_models(paths_a, "--a"), expand_models(paths_b, "--b")
    opened = {}
    try:
        for side, files in (("A", files_a), ("B", files_b)):
            for name, path in files.items():
                ff = open_features(path, key=key)
                opened[(side, name)] = (ff, clamp_layers(ff, read_layers(side, ff), outliers=outliers))
        ns = {(s, m): ff.n for (s, m), (ff, _) in opened.items()}
        n = next(iter(ns.values()))
        for (s, m), nn in ns.items():
            if nn != n:
                raise ValueError(f"every model needs the same N: {m} ({s}) has N={nn}, the first has N={n}")
        if metric in USES_K:
            check_layer_options([metric], k, normalize=normalize, concat=False, outliers=outliers, backend=backend)
            from vtalign.probe.alignment import _check_k
            _check_k(k, n, [metric])
        options = _options(metric, k, normalize, key, outliers, permutations, alpha, smax_v, agg, seed,
                           {s: {m: _file_id(p) for m, p in f.items()} for s, f in (("a", files_a), ("b", files_b))})
        json_path = None if out_dir is None else os.path.join(out_dir, "leaderboard.json")
        done = None if json_path is None else _resume(json_path, options, n)
        cache = None if out_dir is None else os.path.join(out_dir, "cache")
        lists = {"A": {}, "B": {}}
        if metric in USES_K:
            for (side, name), (ff, layers) in opened.items():
                lists[side][name] = cached_layer_lists(
                    layers, _file_id(ff.path), k, normalize=normalize, options=f"False|{outliers}|{key}",
                    cache_dir=cache, backend=backend, label=f"{side} {name}", progress=progress, device=device)
        layers = {s: {m: opened[(s, m)][1] for m in files} for s, files in (("A", files_a), ("B", files_b))}
        with progress_bar("model pairs", len(files_a) * len(files_b), enabled=progress, unit="pair") as bar:
            bar.update(0 if done is None else len(done.pairs))

            def checkpoint(board: Leaderboard) -> None:
                bar.update(len(board.pairs) - bar.n)
                if json_path is not None:
                    write_json(json_path, _report(board, options, complete=False))

            board = leaderboard_from_lists(
                lists["A"] or None, lists["B"] or None, metric, n_permutations=permutations, alpha=alpha,
                smax=smax_v, agg=agg, seed=seed, layers_a=layers["A"], layers_b=layers["B"], normalize=normalize,
                backend=backend, done=done, on_model_b=checkpoint, n=n, k=k)
    finally:
        for ff, _ in opened.values():
            ff.close()
    written: list[str] = []
    if out_dir is not None:
        written.append(write_text(os.path.join(out_dir, "leaderboard.md"), board.markdown()))
        written.append(write_json(json_path, _report(board, options, complete=True)))
        if plots_unavailable() is None:
            what = "calibrated" if permutations else "raw"
            m = board.matrix(what)
            written.append(heatmap_png(os.path.join(out_dir, "leaderboard.png"), m, best_cell(m),
                                       names_a=board.models_a, names_b=board.models_b, title=f"{metric}, {what}",
                                       label_a="model A", label_b="model B"))
    return board, written


__all__ = ["expand_models", "leaderboard_files"]
