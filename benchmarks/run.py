"""Benchmark runner: `python -m benchmarks.run NAME [--size small|full]`.

NAME is a suite (`benchmarks/bench_NAME.py`, which defines
`run(size: str) -> str` returning a markdown report) or `all`. The report is
printed, prefixed with the exact command and the machine, and, for the full
size, written to `benchmarks/results/NAME.md`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = sorted(f[6:-3] for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")


def write_atomic(path: str, text: str) -> None:
    from vtalign._atomic import write_text

    write_text(path, text)


def suite_report(name: str, cmd: str, body: str) -> str:
    """The NAME.md text of one suite's run."""
    return f"# {name}\n\nCommand: `{cmd}`\n\nMachine: {machine()}\n\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run")
    p.add_argument("suite", choices=SUITES + ["all"])
    p.add_argument("--size", choices=["small", "full"], default="full")
    args = p.parse_args(argv)
    cmd = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for name in SUITES if args.suite == "all" else [args.suite]:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        report = suite_report(name, cmd, mod.run(args.size))
        print(report)
        # benchmarks/results holds the full-size numbers the README quotes; a small
        # (smoke) run only prints, so that it cannot overwrite them.
        if args.size == "full":
            os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
            write_atomic(os.path.join(HERE, "results", f"{name}.md"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
