"""`vtalign demo`: the Dynamic Reflections workflow end to end on synthetic data.

A video–text set with a known latent scene and a planted best layer pair is
probed: layer-pair mutual kNN with calibration at the richest setting, a
frames x captions sweep, and the test-time scaling law fitted to it. Plots and
a report go to `out_dir`; a summary is printed.
"""
from __future__ import annotations

import os
import sys

from vtalign._atomic import check_out_dir
from vtalign.data.synthetic import video_text_set
from vtalign.ops._common import check_int, resolve_backend
from vtalign.probe._checks import check_seed
from vtalign.probe.calibration import calibrate
from vtalign.probe.report import heatmap_png, plots_unavailable, scaling_png, skipped_plots_line, write_json, write_text
from vtalign.probe.sweep import scaling_sweep

FRAMES = (1, 2, 4, 8, 16, 32)
CAPTIONS = (1, 2, 3, 5, 10)


def check_demo_args(*, n, k, seed=0, permutations=200, bootstrap=500) -> None:
    """`run_demo`'s numeric arguments, named, before anything runs."""
    n = check_int("n", n, lo=3)
    k = check_int("k", k, lo=1)
    if k > n - 2:
        raise ValueError(f"k must be in [1, n-2] = [1, {n - 2}] for n = {n} (the calibration's permutation null "
                         f"has no spread at k = n-1), got k={k}")
    check_seed(seed)
    check_int("permutations", permutations, lo=2)
    check_int("bootstrap", bootstrap, lo=2)


def run_demo(out_dir: str = os.path.join("runs", "demo"), *, n: int = 1024, k: int = 10, seed: int = 0,
             permutations: int = 200, bootstrap: int = 500, progress: bool = True) -> dict:
    """Run the demo, write its report to `out_dir`, print a summary; returns the summary dict.

    Without an importable matplotlib, summary.json and report.md are still written
    and one line on stderr says the plots were skipped and how to get them.
    Every argument is checked before anything is computed or printed: k in
    [1, n - 2] (the calibration's null has no spread at k = n - 1), seed in
    [0, 2**63 - 1], permutations and bootstrap >= 2, an `out_dir` that can be written.
    """
    check_demo_args(n=n, k=k, seed=seed, permutations=permutations, bootstrap=bootstrap)
    check_out_dir(out_dir, "out_dir")
    data = video_text_set(n=n, seed=seed)
    nf, nc = max(FRAMES), max(CAPTIONS)
    video, text = data.video_features(nf), data.text_features(nc)
    backend = resolve_backend("auto", [video])
    print(f"vtalign demo: synthetic video-text set, N={n} samples, {video.shape[1]} video layers x "
          f"{text.shape[1]} text layers, k={k}, backend={backend}; planted best pair {data.best}\n")

    cal = calibrate(video, text, "mutual_knn", k=k, n_permutations=permutations, n_bootstrap=bootstrap, seed=seed)
    print(f"## Layer-pair mutual kNN at {nf} frames x {nc} captions (rows: video layer, columns: text layer)\n")
    from vtalign.probe.alignment import _result

    res = _result(cal.scores, "mutual_knn", k, n, False)
    print(res.table())
    print("\n" + cal.summary() + "\n")

    sweep = scaling_sweep(data.video_features, data.text_features, FRAMES, CAPTIONS, k=k, progress=progress)
    print(f"## Best-pair alignment over frames x captions\n\n{sweep.grid_markdown()}\n")
    fit = sweep.fit()
    p = fit.params
    far = float(fit.predict(4 * nf, 4 * nc))
    print("## Test-time scaling law S(n_f, n_c) = S_inf - C_f n_f^-alpha - C_c n_c^-beta\n")
    print(fit.summary())
    print(f"extrapolated: S({4 * nf} frames, {4 * nc} captions) = {far:.3f}; S_inf = {p['S_inf']:.3f}\n")

    os.makedirs(out_dir, exist_ok=True)
    summary = dict(n=n, k=k, backend=backend, planted_best=list(data.best), best=list(cal.best),
                   best_score=cal.best_score, chance=cal.chance, z_best=cal.z_best, p_best=cal.p_best,
                   best_ci=list(cal.best_ci), scores=cal.scores, sweep=dict(
                       n_frames=sweep.n_frames, n_captions=sweep.n_captions, scores=sweep.scores,
                       best_pairs=[list(b) for b in sweep.best_pairs]),
                   scaling=dict(fit.to_dict(), extrapolated={f"{4 * nf}x{4 * nc}": far}))
    # Summaries first and plots last: without matplotlib the numbers are still the
    # result, so the report is written and says which plots are missing and why.
    no_plots = plots_unavailable()
    md = "\n\n".join([
        "# vtalign demo report", f"N={n}, k={k}, backend={backend}, planted best pair {data.best}.",
        f"## Layer-pair mutual kNN ({nf} frames x {nc} captions)", res.table(), cal.summary().replace("\n", "  \n"),
        "## Frames x captions sweep (best pair)", sweep.grid_markdown(), "## Scaling law", fit.summary(),
        "![heat map](heatmap.png)\n\n![scaling](scaling.png)" if no_plots is None else f"Plots skipped: {no_plots}"])
    files = [write_json(os.path.join(out_dir, "summary.json"), summary),
             write_text(os.path.join(out_dir, "report.md"), md + "\n")]
    if no_plots is None:
        files += [
            heatmap_png(os.path.join(out_dir, "heatmap.png"), cal.scores, cal.best, label_a="video layer",
                        label_b="text layer", title=f"mutual kNN, best {cal.best} = {cal.best_score:.3f} "
                                                    f"(planted {data.best})"),
            scaling_png(os.path.join(out_dir, "scaling.png"), sweep.n_frames, sweep.n_captions, sweep.scores,
                        fit.predict, title=f"S_inf = {p['S_inf']:.3f}, alpha = {p['alpha']:.2f}, "
                                           f"beta = {p['beta']:.2f}, R² = {fit.r2:.3f}"),
        ]
    print("wrote " + ", ".join(files))
    if no_plots is not None:
        print(skipped_plots_line("demo", no_plots), file=sys.stderr)
    return summary


__all__ = ["run_demo", "check_demo_args", "FRAMES", "CAPTIONS"]
