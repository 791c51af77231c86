"""The `vtalign sweep` report: sweep.md and sweep.json, then plots (atomic writes).

One model pair: the grid of best-pair scores, the best layer pair and calibrated
score per cell, the fit and its extrapolations; scaling.png and cells.png. Several
models: the leaderboard of the largest cell, every pair's fit ranked by S_inf, the
best model pair per cell; every cell's leaderboard in leaderboards.md; leaderboard.png
and s_inf.png (models x models).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from vtalign.probe.file_sweep import FileSweep, PairSweep
from vtalign.probe.report import best_cell, heatmap_png, plots_unavailable, scaling_png, write_json, write_text
from vtalign.probe.scaling import PARAMS, ScalingFit


def prediction_stderr(fit: ScalingFit, n_frames: float, n_captions: float) -> float:
    """Standard error of the fitted S(n_f, n_c) by the delta method: sqrt(gᵀ cov g),
    g the gradient of the law in (S_inf, C_f, alpha, C_c, beta) at the optimum."""
    p = fit.params
    tf, tc = n_frames ** -p["alpha"], n_captions ** -p["beta"]
    g = np.array([1.0, -tf, p["C_f"] * tf * np.log(n_frames), -tc, p["C_c"] * tc * np.log(n_captions)])
    var = float(g @ fit.cov @ g)
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")


def extrapolations(pair: PairSweep) -> list[dict]:
    """The fitted law beyond the pair's grid: twice the most frames, twice the most captions, both."""
    if pair.fit is None:
        return []
    f, c = max(pair.video_files), max(pair.text_files)
    out = []
    for nf, nc in ((2 * f, c), (f, 2 * c), (2 * f, 2 * c), (8 * f, 8 * c)):
        out.append(dict(n_frames=nf, n_captions=nc, score=float(pair.fit.predict(nf, nc)),
                        stderr=prediction_stderr(pair.fit, nf, nc)))
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _cells(pair: PairSweep) -> list[dict]:
    s = pair.sweep
    mats = s.layer_scores or [None] * len(s.scores)
    out = []
    for i, (f, c, v, b, m) in enumerate(zip(s.n_frames.tolist(), s.n_captions.tolist(), s.scores.tolist(),
                                            s.best_pairs, mats)):
        cell = dict(n_frames=int(f), n_captions=int(c), score=float(v), best_pair=list(b),
                    calibrated=_num(pair.calibrated[i]), p_value=_num(pair.p_values[i]), tau=_num(pair.taus[i]))
        if m is not None:
            cell["layer_scores"] = m
        out.append(cell)
    return out


def _fit_fields(pair: PairSweep) -> dict:
    return dict(fit=None if pair.fit is None else pair.fit.to_dict(), fit_skipped=pair.fit_skipped,
                extrapolation=extrapolations(pair))


def _calibration(res: FileSweep) -> dict:
    b = next(iter(res.boards.values()))
    return dict(permutations=res.permutations, alpha=b.alpha, smax=b.smax, agg=b.agg, seed=b.seed)


def sweep_dict(res: FileSweep) -> dict:
    head = dict(metric=res.metric, k=res.k, n=res.n, calibration=_calibration(res), knn_searches=res.searches,
                knn_lists_from_cache=res.cached)
    if len(res.pairs) == 1:
        pair = res.only_pair()
        return dict(head, video_model=pair.video_model, text_model=pair.text_model,
                    video_files={str(c): p for c, p in pair.video_files.items()},
                    text_files={str(c): p for c, p in pair.text_files.items()}, cells=_cells(pair),
                    **_fit_fields(pair))
    return dict(head, video_models={m: {str(c): p for c, p in f.items()} for m, f in res.video_models.items()},
                text_models={m: {str(c): p for c, p in f.items()} for m, f in res.text_models.items()},
                pairs=[dict(video_model=p.video_model, text_model=p.text_model, cells=_cells(p), **_fit_fields(p))
                       for p in res.pairs.values()],
                leaderboards=[dict(n_frames=f, n_captions=c, ranking=[[p.model_a, p.model_b] for p in b.ranked()])
                              for (f, c), b in res.boards.items()])


def _calibration_line(res: FileSweep) -> str:
    if not res.permutations:
        return "Raw scores only (no permutations)."
    c = _calibration(res)
    return (f"calibrated = clamp((T - τ) / (s_max - τ), 0, 1), T the {c['agg']} over layer pairs, τ its "
            f"{1 - c['alpha']:g} critical value under {c['permutations']} permutations (seed {c['seed']}, the "
            f"same in every cell), s_max = {c['smax']}.")


def _grid(fs, cs, value) -> list[str]:
    lines = ["| frames \\ captions | " + " | ".join(str(c) for c in cs) + " |", "|---|" + "---|" * len(cs)]
    lines += [f"| {f} | " + " | ".join(value(f, c) for c in cs) + " |" for f in fs]
    return lines


def _pair_markdown(res: FileSweep) -> list[str]:
    pair = res.only_pair()
    s = pair.sweep
    fs, cs = list(pair.video_files), list(pair.text_files)
    lv = len(s.layer_scores[0]) if s.layer_scores else 0
    lt = s.layer_scores[0].shape[1] if s.layer_scores else 0
    at = {(int(f), int(c)): i for i, (f, c) in enumerate(zip(s.n_frames.tolist(), s.n_captions.tolist()))}
    parts = [f"{pair.video_model} (video) x {pair.text_model} (text): {s.metric}, k = {s.k}, N = {res.n}; "
             f"{len(fs)} frame counts x {len(cs)} caption counts; {lv} video and {lt} text layers.",
             f"kNN searches: {res.searches} run, {res.cached} from the cache "
             f"(one per layer per file: F·Lv + C·Lt = {len(fs) * lv + len(cs) * lt}; a per-cell loop would run "
             f"F·C·(Lv + Lt) = {len(fs) * len(cs) * (lv + lt)}).", "",
             "## Best-pair score per cell", "", s.grid_markdown(), "",
             "## Best layer pair (video, text) per cell", ""]
    parts += _grid(fs, cs, lambda f, c: "{}, {}".format(*s.best_pairs[at[(f, c)]]))
    if res.permutations:
        parts += ["", "## Calibrated score per cell (p-value)", "", _calibration_line(res), ""]
        parts += _grid(fs, cs, lambda f, c: f"{pair.calibrated[at[(f, c)]]:.3f} ({pair.p_values[at[(f, c)]]:.2g})")
    parts += ["", "## Scaling law", ""]
    if pair.fit is None:
        return parts + [f"Not fitted: {pair.fit_skipped}"]
    fit = pair.fit
    parts += ["S(n_f, n_c) = S_inf - C_f · n_f^-alpha - C_c · n_c^-beta", "",
              "| parameter | value | std. error |", "|---|---|---|"]
    parts += [f"| {p} | {fit.params[p]:.4g} | {fit.stderr[p]:.2g} |" for p in PARAMS]
    parts += ["", f"R² = {fit.r2:.4f}, RMSE = {fit.rmse:.3g} over {fit.n_points} cells."]
    if fit.at_bound:
        parts.append(f"At a bound (their errors are optimistic): {', '.join(fit.at_bound)}.")
    parts += ["", "### Extrapolation", "", "| frames | captions | predicted score | std. error |",
              "|---|---|---|---|"]
    parts += [f"| {e['n_frames']} | {e['n_captions']} | {e['score']:.4f} | {e['stderr']:.2g} |"
              for e in extrapolations(pair)]
    parts.append(f"| ∞ | ∞ | {fit.params['S_inf']:.4f} | {fit.stderr['S_inf']:.2g} |")
    return parts


def _s_inf(pair: PairSweep) -> float:
    return math.nan if pair.fit is None else pair.fit.params["S_inf"]


def _models_markdown(res: FileSweep) -> list[str]:
    fs, cs = res.frames, res.captions
    top = res.boards[(fs[-1], cs[-1])]
    parts = [f"{len(res.video_models)} video x {len(res.text_models)} text models: {res.metric}, k = {res.k}, "
             f"N = {res.n}; frame counts {', '.join(map(str, fs))} x caption counts {', '.join(map(str, cs))}.",
             _calibration_line(res),
             f"kNN searches: {res.searches} run, {res.cached} from the cache (one per layer per file; every cell "
             f"and model pair is scored from them).", "",
             f"## Leaderboard at {fs[-1]} frames, {cs[-1]} captions (the largest cell)", ""]
    parts += top.table("video model", "text model", "video, text")
    parts += ["", "## Every model pair: scaling law", "",
              "Ranked by S_inf (the fitted score with unlimited frames and captions); the score and calibrated "
              "score are those of the pair's own largest cell.", "",
              "| video model | text model | cells | score | calibrated | S_inf | alpha | beta | R² |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in sorted(res.pairs.values(), key=lambda p: (-np.nan_to_num(_s_inf(p), nan=-np.inf), p.video_model,
                                                          p.text_model)):
        last = int(np.argmax(p.sweep.n_frames * 1e9 + p.sweep.n_captions))
        if p.fit is None:
            fit = "not fitted | | | "
        else:
            q, e = p.fit.params, p.fit.stderr
            fit = f"{q['S_inf']:.4f} ± {e['S_inf']:.2g} | {q['alpha']:.3g} | {q['beta']:.3g} | {p.fit.r2:.3f}"
        cal = "-" if math.isnan(p.calibrated[last]) else f"{p.calibrated[last]:.4f}"
        parts.append(f"| {p.video_model} | {p.text_model} | {len(p.sweep.scores)} | {p.sweep.scores[last]:.4f} | "
                     f"{cal} | {fit} |")
    what = "calibrated" if res.permutations else "raw"
    parts += ["", f"## Best model pair per cell ({what} score)", ""]

    def best(f, c):
        r = res.boards[(f, c)].ranked()[0]
        return f"{r.model_a} / {r.model_b} ({getattr(r, what):.3f})"
    return parts + _grid(fs, cs, best)


def leaderboards_markdown(res: FileSweep) -> str:
    """Every cell's leaderboard, cell by cell (frames, then captions)."""
    parts = [f"# vtalign sweep: the leaderboard of every cell ({res.metric}, k = {res.k}, N = {res.n})", "",
             _calibration_line(res)]
    for (f, c), board in res.boards.items():
        parts += ["", f"## {f} frames, {c} captions", "", *board.table("video model", "text model", "video, text")]
    return "\n".join(parts) + "\n"


def sweep_markdown(res: FileSweep) -> str:
    body = _pair_markdown(res) if len(res.pairs) == 1 else _models_markdown(res)
    return "\n".join(["# vtalign sweep", "", *body]) + "\n"


def _cell_matrix(pair: PairSweep) -> torch.Tensor:
    s = pair.sweep
    fs, cs = list(pair.video_files), list(pair.text_files)
    m = torch.empty(len(fs), len(cs), dtype=torch.float64)
    for f, c, v in zip(s.n_frames.tolist(), s.n_captions.tolist(), s.scores.tolist()):
        m[fs.index(int(f)), cs.index(int(c))] = v
    return m


def _plots(res: FileSweep, out_dir: str) -> list[str]:
    if len(res.pairs) == 1:
        pair = res.only_pair()
        s = pair.sweep
        title = "" if pair.fit is None else f"S_inf = {pair.fit.params['S_inf']:.3f}, R² = {pair.fit.r2:.3f}"
        m = _cell_matrix(pair)
        return [scaling_png(os.path.join(out_dir, "scaling.png"), s.n_frames, s.n_captions, s.scores,
                            None if pair.fit is None else pair.fit.predict, title=title),
                heatmap_png(os.path.join(out_dir, "cells.png"), m, best_cell(m),
                            names_a=[str(f) for f in pair.video_files], names_b=[str(c) for c in pair.text_files],
                            label_a="frames", label_b="captions", title=f"best-pair {s.metric} per cell")]
    fs, cs = res.frames, res.captions
    what = "calibrated" if res.permutations else "raw"
    top = res.boards[(fs[-1], cs[-1])]
    m = top.matrix(what)
    files = [heatmap_png(os.path.join(out_dir, "leaderboard.png"), m, best_cell(m), names_a=top.models_a,
                         names_b=top.models_b, label_a="video model", label_b="text model",
                         title=f"{res.metric}, {what}, {fs[-1]} frames x {cs[-1]} captions")]
    va, ta = list(res.video_models), list(res.text_models)
    s_inf = torch.tensor([[_s_inf(res.pairs[(a, b)]) for b in ta] for a in va], dtype=torch.float64)
    if not torch.isnan(s_inf).all():
        files.append(heatmap_png(os.path.join(out_dir, "s_inf.png"), s_inf, best_cell(s_inf), names_a=va,
                                 names_b=ta, label_a="video model", label_b="text model",
                                 title=f"fitted S_inf ({res.metric}; blank: not fitted)"))
    return files


def write_sweep_report(res: FileSweep, out_dir: str) -> tuple[list[str], str | None]:
    """sweep.json, sweep.md (and leaderboards.md for several models), then (matplotlib
    permitting) the plots.
    Returns (paths written, why plots were skipped or None)."""
    files = [write_json(os.path.join(out_dir, "sweep.json"), sweep_dict(res)),
             write_text(os.path.join(out_dir, "sweep.md"), sweep_markdown(res))]
    if len(res.pairs) > 1:
        files.append(write_text(os.path.join(out_dir, "leaderboards.md"), leaderboards_markdown(res)))
    no_plots = plots_unavailable()
    if no_plots is not None:
        return files, str(no_plots)
    return files + _plots(res, out_dir), None
