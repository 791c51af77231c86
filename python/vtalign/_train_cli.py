"""Command-line options shared by the reference training demos (`vtalign.mova.train`,
`vtalign.twins.train`): one definition of the common flags and their checks."""
from __future__ import annotations

import argparse

import torch

from vtalign.cli import VtalignParser, int_in, positive_int, seed_int


def training_parser(prog: str, description: str, *, data: str, steps: int, batch_size: int, n_train: int,
                    n_test: int) -> argparse.ArgumentParser:
    """A parser with --synthetic, --json, --seed, --steps, --batch-size, --n-train,
    --n-test, --threads and --quiet; callers add their model's own options.

    Every numeric option has a range-checked type (`vtalign.cli.int_in`), and the
    parser's errors are one line on stderr with exit status 2 (`VtalignParser`)."""
    p = VtalignParser(prog=prog, description=description)
    p.add_argument("--synthetic", action="store_true", help=f"train on {data}")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--steps", type=positive_int, default=steps)
    p.add_argument("--batch-size", type=int_in(2), default=batch_size)
    p.add_argument("--n-train", type=int_in(2), default=n_train)
    p.add_argument("--n-test", type=int_in(10), default=n_test)
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (default 1: these models are small, and on a shared machine "
                        "extra threads mostly wait on each other)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def check_training_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate the shared options (exits through p.error) and apply --threads.

    The types refuse each out-of-range value; this checks what depends on two
    options (--n-train >= --batch-size) and that --json can be written, before
    any training starts."""
    from vtalign._atomic import check_out_file

    if args.threads < 1:
        p.error("--threads must be >= 1")
    if not args.synthetic:
        p.error("only --synthetic is supported: real features are not shipped with vtalign")
    if args.steps < 1 or args.batch_size < 2 or args.n_train < args.batch_size or args.n_test < 10:
        p.error("need --steps >= 1, --batch-size >= 2, --n-train >= --batch-size and --n-test >= 10")
    if args.json is not None:
        try:
            check_out_file(args.json, "--json")
        except (ValueError, TypeError, OSError) as e:
            p.error(str(e))
    torch.set_num_threads(args.threads)
