"""`vtalign probe A B`: every layer of A against every layer of B; `--a FILES... --b FILES...`: a leaderboard."""
from __future__ import annotations

import argparse
import os
import sys

from vtalign.cli._args import _probe_device, int_in, positive_int, seed_int
from vtalign.cli._leaderboard import add_leaderboard_arguments, cmd_leaderboard


def _cmd_probe(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.report import skipped_plots_line
    from vtalign.probe.run import probe_files, probe_markdown

    if args.out is not None:
        check_out_dir(args.out, "--out")
    device = _probe_device(args.device, args.backend)
    if args.models_a is not None or args.models_b is not None:
        return cmd_leaderboard(args, device)
    if args.a is None or args.b is None:
        raise ValueError("give two feature files (vtalign probe A B) or a leaderboard (--a FILES... --b FILES...)")
    res = probe_files(args.a, args.b, metrics=args.metric, k=args.k, out_dir=args.out,
                      normalize=not args.no_normalize, concat=args.concat, outliers=args.outliers,
                      key=args.key, calibrate=args.calibrate, permutations=args.permutations,
                      bootstrap=args.bootstrap, seed=args.seed, backend=args.backend, progress=not args.quiet,
                      device=device, alpha=args.alpha, smax=args.smax, agg=args.agg)
    print(probe_markdown(res, f"{os.path.basename(args.a)} x {os.path.basename(args.b)}"))
    if res.files:
        print("wrote " + ", ".join(res.files))
    if res.plots_skipped:
        # exit 0: the summaries the user asked for are complete; the line says how to get the plots
        print(skipped_plots_line("probe", res.plots_skipped), file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    from vtalign.probe.metrics import METRICS

    pr = sub.add_parser("probe", help="align every layer of feature file A with every layer of B")
    pr.add_argument("a", nargs="?", help="features of model A (.pt with 'feats' [N, L, D], .npy, .npz, .safetensors)")
    pr.add_argument("b", nargs="?", help="features of model B, same N")
    add_leaderboard_arguments(pr)
    pr.add_argument("--metric", nargs="+", default=["mutual_knn"], choices=list(METRICS) + ["all"])
    pr.add_argument("--k", type=positive_int, default=10, help="neighbours per sample, in [1, N-1]")
    pr.add_argument("--out", default=None, help="folder for summary.json/.md, heat maps and the kNN cache")
    pr.add_argument("--key", default="feats", help="entry holding the features in the file")
    pr.add_argument("--concat", action="store_true", help="add all layers concatenated as an extra layer")
    pr.add_argument("--outliers", choices=["exact", "approximate"], default=None)
    pr.add_argument("--no-normalize", action="store_true", help="skip L2-normalising rows")
    pr.add_argument("--calibrate", action="store_true",
                    help="permutation null: calibrated score, p, τ (--alpha, --smax, --agg) for every metric; "
                         "max-corrected z/p and bootstrap CI for the kNN metrics")
    pr.add_argument("--permutations", type=int_in(2), default=200)
    pr.add_argument("--bootstrap", type=int_in(2), default=1000)
    pr.add_argument("--seed", type=seed_int, default=0)
    pr.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    pr.add_argument("--device", default="cpu",
                    help="where the kNN searches run: cpu (default), cuda, cuda:1, ... (one layer at a time)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_cmd_probe)
