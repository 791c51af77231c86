"""`vtalign demo`: the whole probing workflow on built-in synthetic data."""
from __future__ import annotations

import argparse
import os
import time

from vtalign.cli._args import int_in, positive_int, seed_int


def _cmd_demo(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.demo import check_demo_args, run_demo

    if args.k > args.n - 2:  # named as options here; run_demo would name its arguments
        raise ValueError(f"--k must be in [1, --n - 2] = [1, {args.n - 2}] (the calibration's permutation "
                         f"null has no spread at k = n-1), got {args.k}")
    check_demo_args(n=args.n, k=args.k, seed=args.seed)
    check_out_dir(args.out, "--out")
    t0 = time.perf_counter()
    run_demo(out_dir=args.out, n=args.n, k=args.k, seed=args.seed, progress=not args.quiet)
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def add_parser(sub) -> None:
    de = sub.add_parser("demo", help="the whole probing workflow on built-in synthetic video-text data")
    de.add_argument("--out", default=os.path.join("runs", "demo"))
    de.add_argument("--n", type=int_in(3), default=1024)
    de.add_argument("--k", type=positive_int, default=10, help="neighbours per sample, in [1, n-2]")
    de.add_argument("--seed", type=seed_int, default=0)
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=_cmd_demo)
