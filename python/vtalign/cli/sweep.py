"""`vtalign sweep VIDEO_FILES... --text TEXT_FILES...`: the frames x captions grid and its scaling law."""
from __future__ import annotations

import argparse
import sys

from vtalign.cli._args import _probe_device, int_in, positive_int, seed_int
from vtalign.cli._leaderboard import add_calibration_arguments


def _cmd_sweep(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.file_sweep import sweep_files
    from vtalign.probe.report import skipped_plots_line
    from vtalign.probe.sweep_report import sweep_markdown, write_sweep_report

    if args.out is not None:
        check_out_dir(args.out, "--out")
    device = _probe_device(args.device, args.backend)
    res = sweep_files(args.video, args.text, metric=args.metric, k=args.k, out_dir=args.out, key=args.key,
                      backend=args.backend, device=device, progress=not args.quiet, permutations=args.permutations,
                      alpha=args.alpha, smax=args.smax, agg=args.agg, seed=args.seed)
    print(sweep_markdown(res))
    if args.out is not None:
        files, skipped = write_sweep_report(res, args.out)
        print("wrote " + ", ".join(files))
        if skipped:
            print(skipped_plots_line("sweep", skipped), file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    from vtalign.probe.metrics import KNN_METRICS

    sw = sub.add_parser("sweep", help="frames x captions grid of extracted files, best pairs, calibrated scores, "
                                      "scaling-law fit; with several models a leaderboard in every cell")
    sw.add_argument("video", nargs="+",
                    help="video feature files <model>_pool-<p>_numframes-N.pt, or folders (one or several models)")
    sw.add_argument("--text", nargs="+", required=True,
                    help="text feature files <model>_pool-<p>_numcaptions-N.pt, or folders (one or several models)")
    sw.add_argument("--metric", choices=list(KNN_METRICS), default="mutual_knn")
    sw.add_argument("--k", type=positive_int, default=10, help="neighbours per sample, in [1, N-1]")
    sw.add_argument("--key", default="feats", help="entry holding the features in the files")
    sw.add_argument("--out", default=None,
                    help="folder for sweep.md/.json, plots, the kNN cache and the cell checkpoint")
    sw.add_argument("--permutations", type=int_in(0), default=200,
                    help="permutations of each cell's null for the calibrated score (0: raw scores only)")
    add_calibration_arguments(sw)
    sw.add_argument("--seed", type=seed_int, default=0, help="seed of the permutations (the same in every cell)")
    sw.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    sw.add_argument("--device", default="cpu",
                    help="where the kNN searches run: cpu (default), cuda, ... (one layer at a time)")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=_cmd_sweep)
