"""The `vtalign` command: probe, scaling, demo, selftest, bench.

User mistakes (bad paths, shapes, options) and a missing optional package
(`vtalign._optional.MissingDependency`, whose message names the pip install)
end with one line on stderr and exit status 2, not a traceback. Plots are the
exception: without matplotlib the summaries are written, one line says the
plots were skipped, and the exit status is 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _probe_device(device: str, backend: str):
    """--device as a torch.device, checked before any file is read."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None
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
    from vtalign.probe.report import skipped_plots_line
    from vtalign.probe.run import probe_files, probe_markdown

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


def _read_table(path: str):
    import numpy as np

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such table: {path}")
    try:
        data = np.genfromtxt(path, delimiter=",", names=True)
    except ValueError as e:
        raise ValueError(f"{path}: not a CSV table with a header row ({e})") from None
    need = ("n_frames", "n_captions", "score")
    if data.dtype.names is None or any(c not in data.dtype.names for c in need):
        raise ValueError(f"{path}: needs the columns {need}, found {data.dtype.names}")
    return (np.atleast_1d(data["n_frames"]), np.atleast_1d(data["n_captions"]), np.atleast_1d(data["score"]))


def _cmd_scaling(args: argparse.Namespace) -> int:
    from vtalign.probe.report import plots_unavailable, scaling_png, skipped_plots_line, write_json
    from vtalign.probe.scaling import fit_scaling_law

    if args.table:
        nf, nc, s = _read_table(args.table)
        fit = fit_scaling_law(nf, nc, s)
    else:
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
    from vtalign.probe.demo import run_demo

    t0 = time.perf_counter()
    run_demo(out_dir=args.out, n=args.n, k=args.k, seed=args.seed, progress=not args.quiet)
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    from vtalign._atomic import write_text
    from vtalign.selftest import markdown, run_selftest

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

    p = argparse.ArgumentParser(prog="vtalign", description="kernels and probes for video-text alignment")
    sub = p.add_subparsers(dest="cmd", required=True)

    pr = sub.add_parser("probe", help="align every layer of feature file A with every layer of B")
    pr.add_argument("a", help="features of model A (.pt with 'feats' [N, L, D], .npy, .npz, .safetensors)")
    pr.add_argument("b", help="features of model B, same N")
    pr.add_argument("--metric", nargs="+", default=["mutual_knn"], choices=list(METRICS) + ["all"])
    pr.add_argument("--k", type=int, default=10)
    pr.add_argument("--out", default=None, help="folder for summary.json/.md, heat maps and the kNN cache")
    pr.add_argument("--key", default="feats", help="entry holding the features in the file")
    pr.add_argument("--concat", action="store_true", help="add all layers concatenated as an extra layer")
    pr.add_argument("--outliers", choices=["exact", "approximate"], default=None)
    pr.add_argument("--no-normalize", action="store_true", help="skip L2-normalising rows")
    pr.add_argument("--calibrate", action="store_true", help="permutation null, max-corrected z/p, bootstrap CI")
    pr.add_argument("--permutations", type=int, default=200)
    pr.add_argument("--bootstrap", type=int, default=1000)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    pr.add_argument("--device", default="cpu",
                    help="where the kNN searches run: cpu (default), cuda, cuda:1, ... (one layer at a time)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_cmd_probe)

    sc = sub.add_parser("scaling", help="fit S(n_f, n_c) = S_inf - C_f n_f^-a - C_c n_c^-b")
    sc.add_argument("--table", help="CSV with columns n_frames,n_captions,score (else: synthetic sweep)")
    sc.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    sc.add_argument("--captions", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    sc.add_argument("--n", type=int, default=1024, help="synthetic samples")
    sc.add_argument("--k", type=int, default=10)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--out", default=None)
    sc.add_argument("--quiet", action="store_true")
    sc.set_defaults(func=_cmd_scaling)

    de = sub.add_parser("demo", help="the whole probing workflow on built-in synthetic video-text data")
    de.add_argument("--out", default=os.path.join("runs", "demo"))
    de.add_argument("--n", type=int, default=1024)
    de.add_argument("--k", type=int, default=10)
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=_cmd_demo)

    st = sub.add_parser("selftest", help="every op on this device against the float64 reference: a pass/fail "
                                         "table with the versions (exit 1 if any check fails)")
    st.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    st.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    st.add_argument("--small", action="store_true", help="small shapes (for the Triton interpreter on a CPU)")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--out", default=None, help="also write the table to this markdown file")
    st.set_defaults(func=_cmd_selftest)

    sub.add_parser("bench", help="every benchmark suite vs installed peers, static GPU table, H100 floors "
                                 "(options: --size small|full --out DIR --compare OLD.json --suites ... --refuse-busy)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its options belong to benchmarks.report
        args = argparse.Namespace(cmd="bench")
        run = lambda: _cmd_bench(args, argv[1:])  # noqa: E731
    else:
        args = build_parser().parse_args(argv)
        run = lambda: args.func(args)  # noqa: E731
    from vtalign._optional import MissingDependency

    try:
        return run()
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError, MissingDependency) as e:
        print(f"vtalign {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vtalign {args.cmd}: interrupted (finished layers stay cached; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
