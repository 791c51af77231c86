"""The `vtalign` command: one module per subcommand, each with `add_parser(sub)`.

User mistakes (bad paths, shapes, options) and a missing optional package
(`vtalign._optional.MissingDependency`, whose message names the pip install)
end with one line on stderr and exit status 2, not a traceback. Plots are the
exception: without matplotlib the summaries are written, one line says the
plots were skipped, and the exit status is 0.

Where each mistake is caught:
- every numeric option has a range-checked type (`int_in`, `float_in`), so
  argparse itself refuses `--n -5` ("argument --n: must be >= 1, got -5");
  `VtalignParser.error` prints that as one line, not the usage block;
- options that depend on each other (--k against --n, the sweep grid) and the
  output folder (`vtalign._atomic.check_out_dir`) are checked in each command
  before it computes anything;
- `main()` turns every OSError (a path that is a folder or a file where the other
  is expected, permissions, a full disk) into one line naming the option whose
  path it concerns.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from vtalign.cli._args import VtalignParser
from vtalign.cli.bench import run_bench

# each names a module of this package holding `add_parser(sub)`; the order is --help's
COMMANDS = ("probe", "extract", "sweep", "scaling", "demo", "selftest", "bench")


def build_parser() -> argparse.ArgumentParser:
    p = VtalignParser(prog="vtalign", description="kernels and probes for video-text alignment")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        importlib.import_module(f"vtalign.cli.{name}").add_parser(sub)
    return p


def _path_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """{option as the user wrote it ("--out", "a"): its value} for every str option of the command."""
    sub = None
    for action in parser._actions:  # the subcommand's own parser holds its options
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices.get(getattr(args, "cmd", None))
    out = {}
    for action in (sub or parser)._actions:
        v = getattr(args, action.dest, None)
        if isinstance(v, str) and v:
            out[max(action.option_strings, key=len) if action.option_strings else action.dest] = v
    return out


def os_error_line(e: OSError, options: dict[str, str] | None = None) -> str:
    """One line for an OSError: the path, what is wrong with it, and the option
    whose path it is (the path itself, or a file inside that folder)."""
    if not e.strerror or e.filename is None:  # raised by vtalign with its own message
        return str(e)
    path = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes, os.PathLike)) else str(e.filename)
    line = f"{path}: {e.strerror}" if e.filename2 is None else f"{path} -> {os.fsdecode(e.filename2)}: {e.strerror}"
    full = os.path.abspath(path)
    for opt, value in (options or {}).items():
        v = os.path.abspath(value)
        if full == v or full.startswith(v.rstrip(os.sep) + os.sep):
            return f"{opt}: {line}"
    return line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its options belong to benchmarks.report
        args = argparse.Namespace(cmd="bench")
        parser = None
        run = lambda: run_bench(argv[1:])  # noqa: E731
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        run = lambda: args.func(args)  # noqa: E731
    from vtalign._optional import MissingDependency

    try:
        return run()
    except (ValueError, TypeError, MissingDependency) as e:
        print(f"vtalign {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # every path problem: missing, folder vs file, permissions, disk full, ...
        options = _path_options(parser, args) if parser is not None else {}
        print(f"vtalign {args.cmd}: error: {os_error_line(e, options)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        done = "batches" if args.cmd == "extract" else "layers"
        print(f"vtalign {args.cmd}: interrupted (finished {done} stay cached; rerun to resume)", file=sys.stderr)
        return 130
