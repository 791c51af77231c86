"""The `vtalign` command: probe, scaling, demo, selftest, bench.

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
import os
import sys
import time

SEED_MAX = 2 ** 63 - 1  # vtalign.probe._checks.SEED_MAX (kept import-free: --help stays fast)


class VtalignParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2):
    `PROG: error: MESSAGE (PROG --help lists the options)`."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_in(lo: int | None = None, hi: int | None = None):
    """An argparse `type` for an integer in [lo, hi]: argparse reports a bad value as
    "argument --n: must be >= 1, got -5" (or "must be an integer, got '1.5'")."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if lo is not None and hi is not None and not lo <= v <= hi:
            top = f"2**{hi.bit_length()} - 1" if hi > 2 ** 32 and (hi + 1) & hi == 0 else str(hi)
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {top}], got {v}")
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {v}")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse `type` for a finite number in [lo, hi] (an end excluded with
    `lo_open` / `hi_open`); NaN and Inf are refused."""
    import math

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}, got {v:g}")
        return v

    parse.__name__ = "float"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
seed_int = int_in(0, SEED_MAX)
non_negative_float = float_in(0.0)


def _parse_device(device: str):
    """--device as a torch.device; one line naming the option for anything torch cannot parse."""
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"--device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None


def _probe_device(device: str, backend: str):
    """--device as a torch.device, checked before any file is read."""
    import torch

    dev = _parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available to torch here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"--device: {device!r} is neither cpu nor cuda")
    if backend == "triton":  # a missing triton is the first thing to fix
        from vtalign._optional import require

        require("triton", None, "backend='triton'")
    if backend == "triton" and dev.type != "cuda":
        raise ValueError("--backend triton runs the kNN searches on a GPU: add --device cuda")
    if backend == "cpp" and dev.type != "cpu":
        raise ValueError("--backend cpp runs on the CPU: drop --device or use --backend triton")
    return None if dev.type == "cpu" else dev


def _cmd_probe(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.report import skipped_plots_line
    from vtalign.probe.run import probe_files, probe_markdown

    if args.out is not None:
        check_out_dir(args.out, "--out")
    device = _probe_device(args.device, args.backend)
    res = probe_files(args.a, args.b, metrics=args.metric, k=args.k, out_dir=args.out,
                      normalize=not args.no_normalize, concat=args.concat, outliers=args.outliers,
                      key=args.key, calibrate=args.calibrate, permutations=args.permutations,
                      bootstrap=args.bootstrap, seed=args.seed, backend=args.backend, progress=not args.quiet,
                      device=device)
    print(probe_markdown(res, f"{os.path.basename(args.a)} x {os.path.basename(args.b)}"))
    if res.files:
        print("wrote " + ", ".join(res.files))
    if res.plots_skipped:
        # exit 0: the summaries the user asked for are complete; the line says how to get the plots
        print(skipped_plots_line("probe", res.plots_skipped), file=sys.stderr)
    return 0


def _synthetic_limits() -> tuple[int, int]:
    """The most frames and captions `video_text_set` (the synthetic sweep) provides."""
    import inspect

    from vtalign.data.synthetic import video_text_set

    ps = inspect.signature(video_text_set).parameters
    return ps["max_frames"].default, ps["max_captions"].default


def _cmd_scaling(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_dir
    from vtalign.probe.report import plots_unavailable, scaling_png, skipped_plots_line, write_json
    from vtalign.probe.scaling import fit_scaling_law, read_scaling_table

    if args.out is not None:
        check_out_dir(args.out, "--out")
    if args.table:
        nf, nc, s = read_scaling_table(args.table, name="--table")
        fit = fit_scaling_law(nf, nc, s)
    else:
        # everything the sweep and the fit will refuse, refused before the sweep runs
        for opt, values, most in zip(("--frames", "--captions"), (args.frames, args.captions), _synthetic_limits()):
            bad = [v for v in values if v > most]
            if bad:
                raise ValueError(f"{opt}: the synthetic set has at most {most}, got {bad[0]}")
            if len(set(values)) < 3:
                raise ValueError(f"{opt}: the scaling law needs at least 3 distinct values, got {sorted(set(values))}")
        if args.k > args.n - 1:
            raise ValueError(f"--k must be in [1, --n - 1] = [1, {args.n - 1}], got {args.k}")
        from vtalign.data.synthetic import video_text_set
        from vtalign.probe.sweep import scaling_sweep

        data = video_text_set(n=args.n, seed=args.seed)
        sweep = scaling_sweep(data.video_features, data.text_features, args.frames, args.captions, k=args.k,
                              progress=not args.quiet)
        print(sweep.grid_markdown())
        nf, nc, s = sweep.n_frames, sweep.n_captions, sweep.scores
        fit = sweep.fit()
    print(fit.summary())
    if args.out:
        no_plots = plots_unavailable()
        files = [write_json(os.path.join(args.out, "scaling_fit.json"),
                            dict(fit.to_dict(), points=dict(n_frames=nf, n_captions=nc, scores=s)))]
        if no_plots is None:
            files.append(scaling_png(os.path.join(args.out, "scaling.png"), nf, nc, s, fit.predict,
                                     title=f"S_inf={fit.params['S_inf']:.3f}, R²={fit.r2:.3f}"))
        print("wrote " + ", ".join(files))
        if no_plots is not None:
            print(skipped_plots_line("scaling", no_plots), file=sys.stderr)
    return 0


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


def _cmd_selftest(args: argparse.Namespace) -> int:
    from vtalign._atomic import check_out_file, write_text
    from vtalign.selftest import markdown, run_selftest

    if args.out is not None:
        check_out_file(args.out, "--out")
    _parse_device(args.device)
    checks, env = run_selftest(args.device, backend=args.backend, small=args.small, seed=args.seed)
    text = markdown(checks, env)
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0 if all(c.passed for c in checks) else 1


def _cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    # the suites ship inside the package (vtalign.benchmarks), so this works from any folder
    from vtalign.benchmarks.report import main as bench_main

    return bench_main(rest)


def build_parser() -> argparse.ArgumentParser:
    from vtalign.probe.metrics import METRICS

    p = VtalignParser(prog="vtalign", description="kernels and probes for video-text alignment")
    sub = p.add_subparsers(dest="cmd", required=True)

    pr = sub.add_parser("probe", help="align every layer of feature file A with every layer of B")
    pr.add_argument("a", help="features of model A (.pt with 'feats' [N, L, D], .npy, .npz, .safetensors)")
    pr.add_argument("b", help="features of model B, same N")
    pr.add_argument("--metric", nargs="+", default=["mutual_knn"], choices=list(METRICS) + ["all"])
    pr.add_argument("--k", type=positive_int, default=10, help="neighbours per sample, in [1, N-1]")
    pr.add_argument("--out", default=None, help="folder for summary.json/.md, heat maps and the kNN cache")
    pr.add_argument("--key", default="feats", help="entry holding the features in the file")
    pr.add_argument("--concat", action="store_true", help="add all layers concatenated as an extra layer")
    pr.add_argument("--outliers", choices=["exact", "approximate"], default=None)
    pr.add_argument("--no-normalize", action="store_true", help="skip L2-normalising rows")
    pr.add_argument("--calibrate", action="store_true", help="permutation null, max-corrected z/p, bootstrap CI")
    pr.add_argument("--permutations", type=int_in(2), default=200)
    pr.add_argument("--bootstrap", type=int_in(2), default=1000)
    pr.add_argument("--seed", type=seed_int, default=0)
    pr.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    pr.add_argument("--device", default="cpu",
                    help="where the kNN searches run: cpu (default), cuda, cuda:1, ... (one layer at a time)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_cmd_probe)

    sc = sub.add_parser("scaling", help="fit S(n_f, n_c) = S_inf - C_f n_f^-a - C_c n_c^-b")
    sc.add_argument("--table", help="CSV with columns n_frames,n_captions,score (else: synthetic sweep)")
    sc.add_argument("--frames", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    sc.add_argument("--captions", type=positive_int, nargs="+", default=[1, 2, 3, 5, 10])
    sc.add_argument("--n", type=int_in(2), default=1024, help="synthetic samples")
    sc.add_argument("--k", type=positive_int, default=10)
    sc.add_argument("--seed", type=seed_int, default=0)
    sc.add_argument("--out", default=None)
    sc.add_argument("--quiet", action="store_true")
    sc.set_defaults(func=_cmd_scaling)

    de = sub.add_parser("demo", help="the whole probing workflow on built-in synthetic video-text data")
    de.add_argument("--out", default=os.path.join("runs", "demo"))
    de.add_argument("--n", type=int_in(3), default=1024)
    de.add_argument("--k", type=positive_int, default=10, help="neighbours per sample, in [1, n-2]")
    de.add_argument("--seed", type=seed_int, default=0)
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=_cmd_demo)

    st = sub.add_parser("selftest", help="every op on this device against the float64 reference: a pass/fail "
                                         "table with the versions (exit 1 if any check fails)")
    st.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    st.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    st.add_argument("--small", action="store_true", help="small shapes (for the Triton interpreter on a CPU)")
    st.add_argument("--seed", type=seed_int, default=0)
    st.add_argument("--out", default=None, help="also write the table to this markdown file")
    st.set_defaults(func=_cmd_selftest)

    sub.add_parser("bench", help="every benchmark suite vs installed peers, static GPU table, H100 floors "
                                 "(options: --size small|full --out DIR --compare OLD.json --suites ... --refuse-busy)",
                   add_help=False)
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
        run = lambda: _cmd_bench(args, argv[1:])  # noqa: E731
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
        print(f"vtalign {args.cmd}: interrupted (finished layers stay cached; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
