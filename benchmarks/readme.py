"""Regenerate the README's performance section from one `vtalign bench` results.json.

    python -m vtalign.benchmarks.readme [benchmarks/results/results.json] [README.md] [--allow-busy]
        [--block NAME]

Everything between the `<!-- perf:start -->` and `<!-- perf:end -->` markers (with
`--block NAME`: `<!-- perf-NAME:start -->` ... `<!-- perf-NAME:end -->`, for the
suites of another run, each block quoting its own command) is replaced; the
numbers are never copied by hand. A run marked busy (another process
used the machine during a suite) is refused unless `--allow-busy`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .run import write_atomic

# The README quotes the kNN suite's distance to its GEMM floor (seconds of large GEMMs)
# and the leaderboard's and many-model sweep's distance to their kNN searches; soft-DTW's floor is milliseconds
# of small GEMMs, which move more between runs on a shared VM than the ratio itself,
# so it stays in the suite's report.
README_LIMITS = {
    "knn": "vtalign's time over the bare N x N x D products of the same sizes (torch's GEMM, no selection); "
           "below 1 because a self-search needs half of them",
    "calibration": "the leaderboard's time (searches, raw scores and the permutation null of every model pair) "
                   "over the time of its kNN searches alone",
    "sweep": "the many-model sweep's time (searches, a calibrated leaderboard in every cell, a fit per model pair) "
             "over the time of its kNN searches alone",
}


def markers(block: str) -> tuple[str, str]:
    name = "perf" if not block else f"perf-{block}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _ratio(r: dict) -> str:
    return f"**{r['speedup']:.2f}x** ({r['speedup_min']:.2f}–{r['speedup_max']:.2f})"


def section(res: dict) -> str:
    threads = res.get("threads") or {}
    lines = [f"Measured on {res['machine']} ({res['size']} sizes) by `{res['command']}`, one run, every "
             f"method in its own fresh processes, alternated over rounds (3, or 5 where vtalign takes under a "
             f"second); OMP_WAIT_POLICY={res.get('omp_wait_policy')} and {threads.get('torch', '?')} threads "
             "for every method. Speed-up = the other implementation's time / vtalign's in the same round: "
             "median (min–max) over the rounds. Protocol: [benchmarks/README.md](benchmarks/README.md).", "",
             "| suite | case | compared with | vtalign (s) | other (s) | speed-up |", "|---|---|---|---|---|---|"]
    for r in res["speedups"]:
        lines.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {r['vtalign_s']:.3g} | {r['other_s']:.3g} | "
                     f"{_ratio(r)} |")
    limits = [r for r in res.get("limits", []) if r["suite"] in README_LIMITS]
    if limits:
        why = "; ".join(f"{s}: {README_LIMITS[s]}" for s in dict.fromkeys(r["suite"] for r in limits))
        soft = (" Soft-DTW's GEMM floor is in `benchmarks/results/soft_dtw.md`."
                if any(r["suite"] == "soft_dtw" for r in res["speedups"]) else "")
        lines += ["", f"Against the physical limit ({why}).{soft}", "",
                  "| suite | case | limit | vtalign (s) | limit (s) | vtalign / limit |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r['case']} | {r['impl']} | {r['vtalign_s']:.3g} | {r['other_s']:.3g} | "
                  f"{_ratio(r)} |" for r in limits]
    mem = [r for r in res["rows"] if r.get("peak_mib") is not None and r.get("role", "method") == "method"]
    if mem:
        lines += ["", "Peak memory above the inputs (MiB, fresh process per row, largest over the rounds):", "",
                  "| suite | case | implementation | peak MiB |", "|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r['case']} | {r['impl']} | {r['peak_mib']:.0f} |" for r in mem]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vtalign.benchmarks.readme")
    p.add_argument("results", nargs="?", default="benchmarks/results/results.json")
    p.add_argument("readme", nargs="?", default="README.md")
    p.add_argument("--allow-busy", action="store_true", help="publish a run made while the machine was busy")
    p.add_argument("--block", default="", help="write between <!-- perf-BLOCK:start/end --> (another run's suites)")
    args = p.parse_args(argv)
    with open(args.results) as f:
        res = json.load(f)
    if res.get("busy") and not args.allow_busy:
        busy = [n for n, ld in res.get("load", {}).items() if ld.get("busy")]
        print(f"{args.results}: suites {busy} ran while other processes used the machine; re-run on an idle "
              "machine (or pass --allow-busy)", file=sys.stderr)
        return 2
    if "speedups" not in res or res["speedups"] and "speedup_min" not in res["speedups"][0]:
        print(f"{args.results} predates the per-round protocol; re-run `vtalign bench --size full`", file=sys.stderr)
        return 2
    with open(args.readme) as f:
        text = f.read()
    START, END = markers(args.block)
    if START not in text or END not in text:
        print(f"{args.readme} has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_atomic(args.readme, head + START + "\n" + section(res) + "\n" + END + tail)
    print(f"updated {args.readme} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
