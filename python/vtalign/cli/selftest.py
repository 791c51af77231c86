"""`vtalign selftest`: every op on a device against the float64 reference."""
from __future__ import annotations

import argparse

from vtalign.cli._args import _parse_device, seed_int


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


def add_parser(sub) -> None:
    st = sub.add_parser("selftest", help="every op on this device against the float64 reference: a pass/fail "
                                         "table with the versions (exit 1 if any check fails)")
    st.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    st.add_argument("--backend", default="auto", choices=["auto", "triton", "cpp", "torch", "reference"])
    st.add_argument("--small", action="store_true", help="small shapes (for the Triton interpreter on a CPU)")
    st.add_argument("--seed", type=seed_int, default=0)
    st.add_argument("--out", default=None, help="also write the table to this markdown file")
    st.set_defaults(func=_cmd_selftest)
