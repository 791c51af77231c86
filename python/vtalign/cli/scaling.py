"""`vtalign scaling`: fit S(n_f, n_c) to a table or to the synthetic sweep."""
from __future__ import annotations

import argparse
import os
import sys

from vtalign.cli._args import int_in, positive_int, seed_int


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


def add_parser(sub) -> None:
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
