"""`vtalign bench`: the benchmark suites; `vtalign.benchmarks.report` parses its options."""
from __future__ import annotations


def run_bench(rest: list[str]) -> int:
    # the suites ship inside the package (vtalign.benchmarks), so this works from any folder
    from vtalign.benchmarks.report import main as bench_main

    return bench_main(rest)


def add_parser(sub) -> None:
    # listed for --help only: main() hands everything after `bench` to run_bench
    sub.add_parser("bench", help="every benchmark suite vs installed peers, static GPU table, H100 floors "
                                 "(options: --size small|full --out DIR --compare OLD.json --suites ... --refuse-busy)",
                   add_help=False)
