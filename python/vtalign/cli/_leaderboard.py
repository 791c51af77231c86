"""`vtalign probe --a FILES... --b FILES...`: the leaderboard branch of `vtalign probe`."""
from __future__ import annotations

import argparse
import sys


def smax_arg(text: str) -> float | str | None:
    """--smax: a positive number, 'auto' (1, or k for lcs_knn) or 'none' (relu(T - τ), no normalisation)."""
    import math

    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, 'auto' or 'none', got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, 'auto' or 'none', got {text!r}")
    return v


def cmd_leaderboard(args: argparse.Namespace, device) -> int:
    """Run the leaderboard for `vtalign probe --a ... --b ...`; ValueError for a bad combination."""
    from vtalign.probe.leaderboard_files import leaderboard_files
    from vtalign.probe.report import plots_unavailable, skipped_plots_line

    if args.a is not None or args.b is not None:
        raise ValueError("give either two files (vtalign probe A B) or --a FILES... --b FILES..., not both")
    if not args.models_a or not args.models_b:
        raise ValueError("a leaderboard needs both --a and --b (files, folders or .txt manifests)")
    if len(args.metric) != 1 or args.metric == ["all"]:
        raise ValueError(f"a leaderboard ranks by one metric; got --metric {' '.join(args.metric)}")
    if args.concat or args.calibrate:
        raise ValueError("--concat and --calibrate are for two files; a leaderboard is always calibrated "
                         "(--permutations, --alpha, --smax, --agg)")
    board, files = leaderboard_files(args.models_a, args.models_b, metric=args.metric[0], k=args.k,
                                     out_dir=args.out, normalize=not args.no_normalize, key=args.key,
                                     outliers=args.outliers, permutations=args.permutations, alpha=args.alpha,
                                     smax=args.smax, agg=args.agg, seed=args.seed, backend=args.backend,
                                     progress=not args.quiet, device=device)
    print(board.markdown())
    if files:
        print("wrote " + ", ".join(files))
    missing = plots_unavailable() if args.out else None
    if missing is not None:
        print(skipped_plots_line("probe", missing), file=sys.stderr)
    return 0


def add_leaderboard_arguments(pr: argparse.ArgumentParser) -> None:
    pr.add_argument("--a", dest="models_a", nargs="+", metavar="FILE", default=None,
                    help="leaderboard: models of A (feature files, folders of them, or .txt manifests)")
    pr.add_argument("--b", dest="models_b", nargs="+", metavar="FILE", default=None,
                    help="leaderboard: models of B; every model of A is scored against every model of B")
    add_calibration_arguments(pr)


def add_calibration_arguments(pr: argparse.ArgumentParser) -> None:
    """--alpha, --smax and --agg of the Aristotelian calibration (probe, leaderboards, sweep)."""
    from vtalign.cli._args import float_in

    pr.add_argument("--alpha", type=float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.05,
                    help="level of the critical value τ of the calibrated score (default 0.05)")
    pr.add_argument("--smax", type=smax_arg, default="auto",
                    help="the metric's largest score (auto: 1, k for lcs_knn; none: relu(T - τ), no division)")
    pr.add_argument("--agg", choices=["max", "mean"], default="max",
                    help="aggregate over layer pairs that is calibrated (default max)")
