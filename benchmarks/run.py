"""One suite, printed: `python -m vtalign.benchmarks.run NAME [--size small|full]`.

NAME is a suite (`bench_NAME.py` beside this file, defining `run(size) -> str`, a
markdown report) or `all`. Nothing is written: the published results come from one
`vtalign bench --size full --out DIR` run (benchmarks/README.md).
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
PACKAGE = __package__ or "benchmarks"


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")


def write_atomic(path: str, text: str) -> None:
    from vtalign._atomic import write_text

    write_text(path, text)


def suite_module(name: str):
    return importlib.import_module(f"{PACKAGE}.bench_{name}")


def suite_report(name: str, cmd: str, body: str) -> str:
    """The NAME.md text of one suite's run."""
    return f"# {name}\n\nCommand: `{cmd}`\n\nMachine: {machine()}\n\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {PACKAGE}.run")
    p.add_argument("suite", choices=SUITES + ["all"])
    p.add_argument("--size", choices=["small", "full"], default="small")
    args = p.parse_args(argv)
    cmd = f"python -m {PACKAGE}.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for name in SUITES if args.suite == "all" else [args.suite]:
        print(suite_report(name, cmd, suite_module(name).run(args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
