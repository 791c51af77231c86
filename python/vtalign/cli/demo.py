"""`vtalign demo`: the whole probing workflow on built-in synthetic data."""
from __future__ import annotations

import argparse
import os
import time

from vtalign.cli._args import int_in, positive_int, seed_int


def _cmd_demo(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.demo import check_demo_args, run_demo

    if args.real:
        return _cmd_demo_real(args)
    args.n = 1024 if args.n is None else args.n
    args.k = 10 if args.k is None else args.k
    args.out = os.path.join("runs", "demo") if args.out is None else args.out
    if args.k > args.n - 2:  # named as options here; run_demo would name its arguments
        raise ValueError(f"--k must be in [1, --n - 2] = [1, {args.n - 2}] (the calibration's permutation "
                         f"null has no spread at k = n-1), got {args.k}")
    check_demo_args(n=args.n, k=args.k, seed=args.seed)
    check_out_dir(args.out, "--out")
    t0 = time.perf_counter()
    run_demo(out_dir=args.out, n=args.n, k=args.k, seed=args.seed, progress=not args.quiet)
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_demo_real(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.demo_real import run_real_demo

    n = 64 if args.n is None else args.n
    if n < 8:
        raise ValueError(f"--n: the real demo needs at least 8 videos, got {n}")
    k = 5 if args.k is None else args.k
    if k > n - 1:
        raise ValueError(f"--k must be in [1, --n - 1] = [1, {n - 1}], got {k}")
    out = os.path.join("runs", "demo-real") if args.out is None else args.out
    check_out_dir(out, "--out")
    run_real_demo(out, n=n, k=k, seed=args.seed, progress=not args.quiet)
    return 0


def add_parser(sub) -> None:
    de = sub.add_parser("demo", help="the whole probing workflow on built-in synthetic video-text data")
    de.add_argument("--real", action="store_true",
                    help="the raw-video path instead: generated MP4s -> extract video/text -> sweep -> fit (offline)")
    de.add_argument("--out", default=None, help="output folder (default runs/demo, or runs/demo-real with --real)")
    de.add_argument("--n", type=int_in(3), default=None, help="samples (default 1024; 64 videos with --real)")
    de.add_argument("--k", type=positive_int, default=None,
                    help="neighbours per sample, in [1, n-2] (default 10; 5 with --real)")
    de.add_argument("--seed", type=seed_int, default=0)
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=_cmd_demo)
