"""End-to-end probing of two feature files: what `vtalign probe` runs.

Per-layer kNN lists are cached on disk (keyed by the file's identity, the layer
and every option that changes the lists), so an interrupted or repeated run
reuses the searches it already finished; every output is written atomically.
A cache entry is trusted only after it loads with `weights_only=True` and its
shape, dtype, index range and SHA-256 check out; one that does not (truncated,
corrupt, foreign) is reported in one line on stderr, recomputed and rewritten.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass, field

import torch

import vtalign
from vtalign._atomic import atomic_write, check_out_dir
from vtalign._progress import progress_bar
from vtalign.ops._common import check_int
from vtalign.ops.knn import cosine_knn
from vtalign.probe._checks import check_flag, check_seed
from vtalign.probe.alignment import (
    LayerAlignment,
    _check_k,
    _check_n,
    _result,
    check_layer_options,
    clamp_layers,
    read_layers,
)
from vtalign.probe.aristotelian import AristotelianCalibration, calibrated_alignment
from vtalign.probe.calibration import Calibration, calibrate_lists, check_calibration_k
from vtalign.probe.features import open_features
from vtalign.probe.leaderboard import check_leaderboard_options
from vtalign.probe.metrics import KNN_METRICS, METRICS, USES_K, all_pair_scores, layer_count
from vtalign.probe.report import heatmap_png, plots_unavailable, write_json, write_text


def _file_id(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _digest(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.contiguous().numpy().tobytes()).hexdigest()


def save_cached_lists(path: str, idx: torch.Tensor) -> None:
    """Write one layer's lists `[N, k]` (int64) with their SHA-256, atomically."""
    idx = idx.detach().cpu().to(torch.int64).contiguous()
    atomic_write(path, lambda tmp: torch.save({"idx": idx, "sha256": _digest(idx)}, tmp))


def load_cached_lists(path: str, n: int, k: int) -> tuple[torch.Tensor | None, str]:
    """The lists in the cache entry at `path`, or (None, why) when it cannot be trusted:
    it does not load with weights_only=True (truncated, corrupt, not a tensor file),
    or it is not an int64 `[n, k]` tensor of indices in [0, n) whose SHA-256 matches."""
    try:
        with warnings.catch_warnings():  # torch's own warnings about a foreign file: the one line says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            UnicodeDecodeError, AttributeError, KeyError, IndexError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"it does not load: {type(exc).__name__}: {msg[:80]}{'...' if len(msg) > 80 else ''}"
    if not (isinstance(obj, dict) and isinstance(obj.get("idx"), torch.Tensor) and isinstance(obj.get("sha256"), str)):
        return None, "it is not a {'idx', 'sha256'} entry"
    idx = obj["idx"]
    if idx.dtype != torch.int64 or tuple(idx.shape) != (n, k):
        return None, f"it holds {idx.dtype} {tuple(idx.shape)}, expected torch.int64 {(n, k)}"
    if bool((idx < 0).any()) or bool((idx >= n).any()):
        return None, f"it holds indices outside [0, {n})"
    if _digest(idx) != obj["sha256"]:
        return None, "its checksum does not match"
    return idx, ""


def cached_layer_lists(layers, file_id: str, k: int, *, normalize: bool, options: str, cache_dir: str | None,
                       backend: str = "auto", label: str = "kNN", progress: bool = True,
                       device: str | torch.device | None = None) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` (CPU), one search per layer, each reused from
    `cache_dir` when an identical search already ran. With `device`, each layer is
    moved there for its search alone (one layer on the GPU at a time).

    A cache entry that cannot be trusted (`load_cached_lists`) is reported in one
    line on stderr, searched again and rewritten atomically: a truncated or
    corrupt entry never makes every later run fail."""
    n = layer_count(layers)[0]
    out = []
    with progress_bar(f"{label} kNN search", len(layers), enabled=progress, unit="layer") as bar:
        for i in range(len(layers)):
            path = None
            if cache_dir is not None:
                key = hashlib.sha256(f"{file_id}|{i}|{k}|{normalize}|{options}|{vtalign.__version__}"
                                     .encode()).hexdigest()[:24]
                path = os.path.join(cache_dir, f"knn-{key}.pt")
                if os.path.exists(path):
                    idx, why = load_cached_lists(path, n, k)
                    if idx is not None:
                        out.append(idx)
                        bar.set_postfix_str("cached", refresh=False)
                        bar.update()
                        continue
                    print(f"vtalign: cache entry {path} was unreadable ({why}); recomputing it", file=sys.stderr)
            x = layers[i] if device is None else layers[i].to(device)
            idx = cosine_knn(x, k, normalize=normalize, backend=backend)[1].cpu().to(torch.int64)
            del x
            if path is not None:
                save_cached_lists(path, idx)
            out.append(idx)
            bar.update()
    return torch.stack(out)


@dataclass
class ProbeResult:
    """Scores per metric, calibration where asked, the files written, and why plots
    were skipped (`plots_skipped`, the MissingDependency message) when they were."""

    results: dict[str, LayerAlignment]
    calibration: dict[str, Calibration] = field(default_factory=dict)
    calibrated: dict[str, AristotelianCalibration] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    plots_skipped: str | None = None

    def to_dict(self) -> dict:
        d = {}
        for m, r in self.results.items():
            d[m] = dict(scores=r.scores, best=list(r.best), best_score=r.best_score, chance=r.chance,
                        k=r.k, n=r.n, names_a=r.names_a, names_b=r.names_b)
            c = self.calibration.get(m)
            if c is not None:
                d[m]["calibration"] = dict(z_best=c.z_best, p_best=c.p_best, ci=list(c.best_ci),
                                           null_max_mean=float(c.null_max.mean()),
                                           best_stability=c.best_stability, permutations=c.n_permutations,
                                           bootstrap=c.n_bootstrap)
            a = self.calibrated.get(m)
            if a is not None:
                d[m]["calibrated"] = a.to_dict()
        return d


def probe_files(path_a: str, path_b: str, *, metrics=("mutual_knn",), k: int = 10, out_dir: str | None = None,
                normalize: bool = True, concat: bool = False, outliers: str | None = None, key: str = "feats",
                calibrate: bool = False, permutations: int = 200, bootstrap: int = 1000, seed: int = 0,
                backend: str = "auto", progress: bool = True,
                device: str | torch.device | None = None, alpha: float = 0.05, smax: float | None | str = "auto",
                agg: str = "max") -> ProbeResult:
    """Probe every layer pair of two feature files (see `vtalign probe --help`).

    Features are streamed layer by layer from disk (memory-mapped where the
    format allows), so peak memory is about two layers plus the kNN lists.
    With `out_dir` but no importable matplotlib, summary.json and summary.md are
    still written and `plots_skipped` on the result says why the heat maps are not.
    `device` (e.g. "cuda") runs the kNN searches there, one layer at a time; the
    list metrics and CKA run on the CPU. With `calibrate`, every metric also gets
    its calibrated score at level `alpha` (`vtalign.probe.aristotelian`; `smax`,
    `agg` as there) from the same permutations as the kNN metrics' z-scores.
    """
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of names from {METRICS} or ['all'], got {metrics!r}")
    metrics = list(METRICS) if list(metrics) == ["all"] else list(metrics)
    check_layer_options(metrics, k, normalize=normalize, concat=concat, outliers=outliers, backend=backend)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    check_flag("calibrate", calibrate)
    check_flag("progress", progress)
    check_int("permutations", permutations, lo=2)
    check_int("bootstrap", bootstrap, lo=2)
    seed = check_seed(seed)
    if calibrate:
        check_leaderboard_options(metrics[0], k, permutations, alpha, smax, agg, seed)
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, "out_dir")
    ff_a, ff_b = open_features(path_a, key=key), open_features(path_b, key=key)
    try:
        ra, rb = read_layers("A", ff_a), read_layers("B", ff_b)
        n = ff_a.n
        if ff_b.n != n:
            raise ValueError(f"{path_a} has N={n} samples but {path_b} has N={ff_b.n}")
        _check_k(k, n, metrics)
        _check_n(n, metrics)
        if calibrate:
            for m in metrics:
                if m in KNN_METRICS:
                    check_calibration_k(m, k, n)
        la = clamp_layers(ff_a, ra, concat=concat, outliers=outliers)
        lb = clamp_layers(ff_b, rb, concat=concat, outliers=outliers)
        cache = os.path.join(out_dir, "cache") if out_dir else None
        opts = f"{concat}|{outliers}|{key}"
        lists = None
        if any(m in USES_K for m in metrics):
            lists = (cached_layer_lists(la, _file_id(path_a), k, normalize=normalize, options=opts,
                                        cache_dir=cache, backend=backend, label="A", progress=progress, device=device),
                     cached_layer_lists(lb, _file_id(path_b), k, normalize=normalize, options=opts,
                                        cache_dir=cache, backend=backend, label="B", progress=progress, device=device))
        scores = all_pair_scores(metrics, la, lb, k, normalize=normalize, backend=backend, lists=lists)
        res = ProbeResult({m: _result(s, m, k, n, concat) for m, s in scores.items()})
        if calibrate:
            for m in metrics:
                if m in KNN_METRICS:
                    res.calibration[m] = calibrate_lists(lists[0], lists[1], m, n_permutations=permutations,
                                                         n_bootstrap=bootstrap, seed=seed, backend=backend,
                                                         concat=concat)
                # every metric, from the same permutations (the same seed): calibrated score, τ, p
                res.calibrated[m] = calibrated_alignment(la, lb, m, k, n_permutations=permutations, seed=seed,
                                                         normalize=normalize, backend=backend, lists=lists,
                                                         alpha=alpha, smax=smax, agg=agg)
    finally:
        ff_a.close()
        ff_b.close()
    if out_dir:
        # Without matplotlib the summaries are still the result the user asked for:
        # write them and record why the heat maps are missing instead of failing.
        no_plots = plots_unavailable()
        res.plots_skipped = None if no_plots is None else str(no_plots)
        res.files = write_probe_report(res, out_dir, title=f"{os.path.basename(path_a)} x {os.path.basename(path_b)}",
                                       plots=no_plots is None)
    return res


def probe_markdown(res: ProbeResult, title: str) -> str:
    parts = [f"# vtalign probe: {title}", ""]
    for m, r in res.results.items():
        parts += [f"## {m} (k={r.k}, N={r.n})", "", r.table(), "",
                  f"Best pair: A layer {r.names_a[r.best[0]]} x B layer {r.names_b[r.best[1]]} = "
                  f"{r.best_score:.4f} (chance {r.chance:.4f})."]
        if m in res.calibration:
            parts += ["", res.calibration[m].summary()]
        if m in res.calibrated:
            parts += ["", "Calibrated (permutation null of the max over layer pairs): " + res.calibrated[m].summary()]
        parts.append("")
    return "\n".join(parts)


def write_probe_report(res: ProbeResult, out_dir: str, *, title: str, plots: bool = True) -> list[str]:
    """summary.json, summary.md and (with `plots`) one heat map per metric, all
    written atomically; the summaries come first, so they exist even when plotting
    raises (MissingDependency without matplotlib). Returns the paths written."""
    files = [write_json(os.path.join(out_dir, "summary.json"), res.to_dict()),
             write_text(os.path.join(out_dir, "summary.md"), probe_markdown(res, title))]
    if not plots:
        return files
    for m, r in res.results.items():
        files.append(heatmap_png(os.path.join(out_dir, f"heatmap_{m}.png"), r.scores, r.best,
                                 names_a=r.names_a, names_b=r.names_b,
                                 title=f"{m}: best ({r.names_a[r.best[0]]}, {r.names_b[r.best[1]]}) "
                                       f"= {r.best_score:.3f}"))
    return files
