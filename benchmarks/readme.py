"""Regenerate the README's performance section from a `vtalign bench` results.json.

    python -m benchmarks.readme [benchmarks/results/results.json] [README.md]

Everything between the `<!-- perf:start -->` and `<!-- perf:end -->` markers is
replaced; the numbers are never copied by hand.
"""
from __future__ import annotations

import json
import os
import sys

from benchmarks.report import suite_commands
from benchmarks.run import write_atomic

START, END = "<!-- perf:start -->", "<!-- perf:end -->"


def section(res: dict) -> str:
    sp = res["speedups"]
    by_cmd: dict[str, list[str]] = {}
    for suite, cmd in sorted(suite_commands(res).items()):
        by_cmd.setdefault(cmd, []).append(suite)
    how = "; ".join(f"`{cmd}` ({', '.join(s)})" for cmd, s in by_cmd.items())
    lines = [f"Measured on {res['machine']} ({res['size']} sizes) by {how}. Speed-up = the other "
             "implementation's time / vtalign's time, side by side in one run.", "",
             "| suite | case | compared with | vtalign (s) | other (s) | speed-up |", "|---|---|---|---|---|---|"]
    for r in sp:
        lines.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {r['vtalign_s']:.3g} | {r['other_s']:.3g} | "
                     f"**{r['speedup']:.2f}x** |")
    mem = [r for r in res["rows"] if r.get("peak_mib") is not None]
    if mem:
        lines += ["", "Peak memory above the inputs (MiB, fresh process per row):", "",
                  "| suite | case | implementation | peak MiB |", "|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r['case']} | {r['impl']} | {r['peak_mib']:.0f} |" for r in mem]
    st = res.get("static", [])
    if st:
        spills = sum(r["spill_bytes"] for r in st)
        tc = sorted({r["kernel"] for r in st if r["tensor_core_ops"] != "-"})
        lines += ["", f"Static GPU check: {len(st)} kernel configurations x {{sm_80, sm_90}} compiled without a GPU; "
                      f"total spill bytes **{spills}**; maximum registers {max(r['registers'] for r in st)}; "
                      f"tensor-core MMA in {len(tc)} configurations (full table in `benchmarks/results/report.md`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    src = argv[0] if argv else os.path.join("benchmarks", "results", "results.json")
    readme = argv[1] if len(argv) > 1 else "README.md"
    with open(src) as f:
        res = json.load(f)
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_atomic(readme, head + START + "\n" + section(res) + "\n" + END + tail)
    print(f"updated {readme} from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
