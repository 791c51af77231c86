"""The `vtalign sweep` report: sweep.md, sweep.json, scaling.png and cells.png (atomic writes)."""
from __future__ import annotations

import os

import numpy as np
import torch

from vtalign.probe.file_sweep import FileSweep
from vtalign.probe.report import heatmap_png, plots_unavailable, scaling_png, write_json, write_text
from vtalign.probe.scaling import PARAMS, ScalingFit


def prediction_stderr(fit: ScalingFit, n_frames: float, n_captions: float) -> float:
    """Standard error of the fitted S(n_f, n_c) by the delta method: sqrt(gᵀ cov g),
    g the gradient of the law in (S_inf, C_f, alpha, C_c, beta) at the optimum."""
    p = fit.params
    tf, tc = n_frames ** -p["alpha"], n_captions ** -p["beta"]
    g = np.array([1.0, -tf, p["C_f"] * tf * np.log(n_frames), -tc, p["C_c"] * tc * np.log(n_captions)])
    var = float(g @ fit.cov @ g)
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")


def extrapolations(res: FileSweep) -> list[dict]:
    """The fitted law beyond the grid: twice the most frames, twice the most captions, both."""
    if res.fit is None:
        return []
    f, c = max(res.video_files), max(res.text_files)
    out = []
    for nf, nc in ((2 * f, c), (f, 2 * c), (2 * f, 2 * c), (8 * f, 8 * c)):
        out.append(dict(n_frames=nf, n_captions=nc, score=float(res.fit.predict(nf, nc)),
                        stderr=prediction_stderr(res.fit, nf, nc)))
    return out


def _cell_matrix(res: FileSweep) -> torch.Tensor:
    s = res.sweep
    fs, cs = list(res.video_files), list(res.text_files)
    m = torch.empty(len(fs), len(cs), dtype=torch.float64)
    for f, c, v in zip(s.n_frames.tolist(), s.n_captions.tolist(), s.scores.tolist()):
        m[fs.index(int(f)), cs.index(int(c))] = v
    return m


def sweep_dict(res: FileSweep) -> dict:
    s = res.sweep
    cells = [dict(n_frames=int(f), n_captions=int(c), score=float(v), best_pair=list(b), layer_scores=m)
             for f, c, v, b, m in zip(s.n_frames.tolist(), s.n_captions.tolist(), s.scores.tolist(), s.best_pairs,
                                      s.layer_scores)]
    return dict(metric=s.metric, k=s.k, n=res.n, video_files={str(c): p for c, p in res.video_files.items()},
                text_files={str(c): p for c, p in res.text_files.items()}, knn_searches=res.searches,
                knn_lists_from_cache=res.cached, cells=cells,
                fit=None if res.fit is None else res.fit.to_dict(), fit_skipped=res.fit_skipped,
                extrapolation=extrapolations(res))


def sweep_markdown(res: FileSweep) -> str:
    s = res.sweep
    fs, cs = list(res.video_files), list(res.text_files)
    lv = len(s.layer_scores[0]) if s.layer_scores else 0
    lt = s.layer_scores[0].shape[1] if s.layer_scores else 0
    parts = ["# vtalign sweep", "",
             f"{s.metric}, k = {s.k}, N = {res.n}; {len(fs)} frame counts x {len(cs)} caption counts; "
             f"{lv} video and {lt} text layers.",
             f"kNN searches: {res.searches} run, {res.cached} from the cache "
             f"(one per layer per file: F·Lv + C·Lt = {len(fs) * lv + len(cs) * lt}; a per-cell loop would run "
             f"F·C·(Lv + Lt) = {len(fs) * len(cs) * (lv + lt)}).", "",
             "## Best-pair score per cell", "", s.grid_markdown(), "",
             "## Best layer pair (video, text) per cell", "",
             "| frames \\ captions | " + " | ".join(str(c) for c in cs) + " |", "|---|" + "---|" * len(cs)]
    pair = {(int(f), int(c)): b for f, c, b in zip(s.n_frames.tolist(), s.n_captions.tolist(), s.best_pairs)}
    for f in fs:
        parts.append(f"| {f} | " + " | ".join(f"{pair[(f, c)][0]}, {pair[(f, c)][1]}" for c in cs) + " |")
    parts += ["", "## Scaling law", ""]
    if res.fit is None:
        parts.append(f"Not fitted: {res.fit_skipped}")
    else:
        fit = res.fit
        parts += ["S(n_f, n_c) = S_inf - C_f · n_f^-alpha - C_c · n_c^-beta", "",
                  "| parameter | value | std. error |", "|---|---|---|"]
        parts += [f"| {p} | {fit.params[p]:.4g} | {fit.stderr[p]:.2g} |" for p in PARAMS]
        parts += ["", f"R² = {fit.r2:.4f}, RMSE = {fit.rmse:.3g} over {fit.n_points} cells."]
        if fit.at_bound:
            parts.append(f"At a bound (their errors are optimistic): {', '.join(fit.at_bound)}.")
        parts += ["", "### Extrapolation", "", "| frames | captions | predicted score | std. error |",
                  "|---|---|---|---|"]
        parts += [f"| {e['n_frames']} | {e['n_captions']} | {e['score']:.4f} | {e['stderr']:.2g} |"
                  for e in extrapolations(res)]
        parts.append(f"| ∞ | ∞ | {fit.params['S_inf']:.4f} | {fit.stderr['S_inf']:.2g} |")
    return "\n".join(parts) + "\n"


def write_sweep_report(res: FileSweep, out_dir: str) -> tuple[list[str], str | None]:
    """sweep.json and sweep.md, then (matplotlib permitting) scaling.png and cells.png.
    Returns (paths written, why plots were skipped or None)."""
    files = [write_json(os.path.join(out_dir, "sweep.json"), sweep_dict(res)),
             write_text(os.path.join(out_dir, "sweep.md"), sweep_markdown(res))]
    no_plots = plots_unavailable()
    if no_plots is not None:
        return files, str(no_plots)
    s = res.sweep
    title = "" if res.fit is None else f"S_inf = {res.fit.params['S_inf']:.3f}, R² = {res.fit.r2:.3f}"
    files.append(scaling_png(os.path.join(out_dir, "scaling.png"), s.n_frames, s.n_captions, s.scores,
                             None if res.fit is None else res.fit.predict, title=title))
    m = _cell_matrix(res)
    flat = int(torch.argmax(m))
    files.append(heatmap_png(os.path.join(out_dir, "cells.png"), m, (flat // m.shape[1], flat % m.shape[1]),
                             names_a=[str(f) for f in res.video_files], names_b=[str(c) for c in res.text_files],
                             label_a="frames", label_b="captions", title=f"best-pair {s.metric} per cell"))
    return files, None
