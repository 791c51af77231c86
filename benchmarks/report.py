"""`vtalign bench`: every benchmark suite, the static GPU table and the H100 cost
model in one report.

    python -m benchmarks.report [--size small|full] [--out bench] [--compare OLD.json] [--suites ...]

Writes OUT/report.md, OUT/NAME.md per suite, OUT/results.json (machine, versions,
exact command, the command that measured each suite, every measured row) and
OUT/speedup_<suite>.png. `--compare OLD.json` prints what got faster or slower
since an earlier results.json.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import sys
import time

from benchmarks import _measure
from benchmarks.run import SUITES, machine, suite_report, write_atomic

# H100 SXM5 dense peaks (NVIDIA H100 datasheet): the floors below are what a
# kernel could reach at 100% of one unit, i.e. lower bounds, not predictions.
H100 = dict(tf32=494.7e12, bf16=989.4e12, fp32=66.9e12, hbm=3.35e12)


def cost_model() -> list[dict]:
    """DESIGN.md §5 floors for representative sizes, per kernel."""
    rows = []

    def add(kernel, workload, flops=0.0, bytes_=0.0, unit="tf32", note=""):
        t = max(flops / H100[unit] if flops else 0.0, bytes_ / H100["hbm"] if bytes_ else 0.0)
        rows.append(dict(kernel=kernel, workload=workload, gflop=flops / 1e9, gbytes=bytes_ / 1e9,
                         unit=unit, floor_ms=t * 1e3, note=note))

    for n, d in ((50_000, 768), (1_000_000, 1024)):
        add("knn (tf32)", f"L=1, N={n:,}, D={d}", 2 * n * n * d, n * d * 4, "tf32", "2·L·N²·D")
        add("knn (tf32x3, default fp32)", f"L=1, N={n:,}, D={d}", 3 * 2 * n * n * d, n * d * 4, "tf32", "3 TF32 products")
        add("knn (bf16)", f"L=1, N={n:,}, D={d}", 2 * n * n * d, n * d * 2, "bf16")
    add("overlap", "13x13 pairs, N=1,000,000, k=10", 0, 26 * 1_000_000 * 10 * 8, "tf32",
        "index lists read once; La·Lb·N·k² compares hidden under the reads")
    b, n = 32, 256
    add("soft-DTW fwd+bwd", f"B={b}, N=M={n}", 0, b * n * n * 4 * 6, "fp32",
        f"bytes floor: C read, two weights per cell written and read back, E written; "
        f"the wavefront adds {2 * (2 * n - 1)} dependent diagonal steps")
    for bsz, d in ((8192, 512), (65_536, 512)):
        add("contrastive fwd+bwd (bf16)", f"B={bsz:,}, D={d}", 6 * bsz * bsz * d, 4 * bsz * d * 2, "bf16",
            "2·B²·D forward, 4·B²·D backward")
    add("slot loss fwd+bwd (bf16)", "B=2048, T=16, D=256", 6 * 2048 * 2048 * 16 * 256, 0, "bf16")
    return rows


def _table(rows: list[dict], cols: list[str], fmt=None) -> str:
    fmt = fmt or {}
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(fmt.get(c, str)(r.get(c)) for c in cols) + " |")
    return "\n".join(out)


def speedups(rows: list[dict]) -> list[dict]:
    """For each (suite, case), every other implementation's seconds over vtalign's."""
    base = {(r["suite"], r["case"]): r["seconds"] for r in rows if r["impl"] == "vtalign" and r["seconds"]}
    out = []
    for r in rows:
        b = base.get((r["suite"], r["case"]))
        if r["impl"] != "vtalign" and b and r["seconds"]:
            out.append(dict(suite=r["suite"], case=r["case"], impl=r["impl"], vtalign_s=b, other_s=r["seconds"],
                            speedup=r["seconds"] / b))
    return out


def chart(path: str, suite: str, rows: list[dict]) -> str | None:
    rows = [r for r in rows if r["suite"] == suite]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['impl']}\n{r['case']}" for r in rows]
    vals = [r["speedup"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.2), dpi=110)
    ax.barh(range(len(rows)), vals, color=["tab:green" if v >= 1 else "tab:red" for v in vals])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time of the other implementation / time of vtalign (log; >1: vtalign faster)")
    ax.set_title(f"{suite}: vtalign speed-up", fontsize=10)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


def compare(old_path: str, new: dict) -> str:
    with open(old_path) as f:
        old = json.load(f)
    prev = {(r["suite"], r["case"], r["impl"]): r for r in old.get("rows", [])}
    lines = ["| suite | case | impl | old s | new s | new/old |", "|---|---|---|---|---|---|"]
    for r in new["rows"]:
        o = prev.get((r["suite"], r["case"], r["impl"]))
        if o and o.get("seconds") and r.get("seconds"):
            ratio = r["seconds"] / o["seconds"]
            tag = "slower" if ratio > 1.05 else "faster" if ratio < 0.95 else "same"
            lines.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {o['seconds']:.4g} | {r['seconds']:.4g} | "
                         f"{ratio:.2f} ({tag}) |")
    return "\n".join(lines)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("torch", "triton", "numpy", "faiss", "tslearn", "pysdtw"):
        try:
            m = importlib.import_module(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # a missing peer is reported as missing, not an error
            out[mod] = None
    import vtalign
    out["vtalign"] = vtalign.__version__
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtalign bench")
    p.add_argument("--size", choices=["small", "full"], default="small")
    p.add_argument("--out", default="bench")
    p.add_argument("--compare", default=None, help="an earlier results.json")
    p.add_argument("--suites", nargs="+", default=None, help=f"subset of {SUITES}")
    p.add_argument("--merge", default=None,
                   help="an earlier results.json whose rows for the other suites are kept (with the "
                        "commands that measured them)")
    return p


def _default_suites() -> list[str]:
    return [s for s in SUITES if s != "gpu_static"]


def run_command(size: str, suites: list[str] | None) -> str:
    """The part of a `vtalign bench` command line that decides a suite's numbers (--out,
    --merge and --compare do not)."""
    return f"vtalign bench --size {size}" + (" --suites " + " ".join(suites) if suites else "")


def suite_commands(res: dict) -> dict[str, str]:
    """suite -> the command that measured its rows in a results.json. Files written before
    `commands` existed kept one line, the "&&"-joined history of merged runs: there the
    last run that covered a suite is the one whose rows were kept."""
    if "commands" in res:
        return dict(res["commands"])
    out: dict[str, str] = {}
    for part in res.get("command", "").split("&&"):
        toks = shlex.split(part.strip())
        if toks[:2] != ["vtalign", "bench"]:
            continue
        ns, _ = _parser().parse_known_args(toks[2:])
        for s in ns.suites or _default_suites():
            out[s] = run_command(ns.size, ns.suites)
    present = {r["suite"] for r in res.get("rows", [])}
    return {s: c for s, c in out.items() if s in present}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    suites = _default_suites() if args.suites is None else args.suites
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {SUITES}")
    if args.compare and not os.path.exists(args.compare):
        raise FileNotFoundError(f"no such results file: {args.compare}")
    os.makedirs(args.out, exist_ok=True)
    command = "vtalign bench " + " ".join(shlex.quote(a) for a in argv)
    _measure.RESULTS.clear()
    sections, t0 = [], time.perf_counter()
    for name in suites:
        print(f"[vtalign bench] {name} ({args.size}) ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        body = importlib.import_module(f"benchmarks.bench_{name}").run(args.size)
        sections.append(f"## {name} ({time.perf_counter() - t:.0f} s)\n\n{body}")
        write_atomic(os.path.join(args.out, f"{name}.md"), suite_report(name, command, body))
    from benchmarks.bench_gpu_static import format_rows, static_rows as compile_static

    print("[vtalign bench] static GPU compile ...", file=sys.stderr, flush=True)
    static_rows = compile_static()
    static_md = format_rows(static_rows)
    rows = list(_measure.RESULTS)
    commands = {s: run_command(args.size, args.suites) for s in suites}
    if args.merge:
        with open(args.merge) as f:
            old = json.load(f)
        rows = [r for r in old["rows"] if r["suite"] not in suites] + rows
        kept = {r["suite"] for r in rows}
        commands = {**{s: c for s, c in suite_commands(old).items() if s in kept}, **commands}
    sp = speedups(rows)
    result = dict(command=command, commands=commands, machine=machine(), versions=versions(), size=args.size,
                  seconds=time.perf_counter() - t0, rows=rows, speedups=sp, static=static_rows,
                  cost_model=cost_model())
    write_atomic(os.path.join(args.out, "results.json"), json.dumps(result, indent=1) + "\n")
    charts = [c for c in (chart(os.path.join(args.out, f"speedup_{s}.png"), s, sp) for s in suites) if c]
    f3 = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    md = [f"# vtalign bench ({args.size})", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v), "",
          "## Speed-ups (other implementation's time / vtalign's time)", "",
          _table(sp, ["suite", "case", "impl", "vtalign_s", "other_s", "speedup"],
                 dict(vtalign_s=f3, other_s=f3, speedup=lambda v: f"**{v:.2f}x**")), "",
          *sections, "", "## Static GPU table (no GPU needed)", "", static_md, "",
          "## H100 cost-model floors (DESIGN.md §5)", "",
          _table(result["cost_model"], ["kernel", "workload", "gflop", "gbytes", "unit", "floor_ms", "note"],
                 dict(gflop=f3, gbytes=f3, floor_ms=f3)), "",
          *[f"![{os.path.basename(c)}]({os.path.basename(c)})" for c in charts]]
    write_atomic(os.path.join(args.out, "report.md"), "\n".join(md) + "\n")
    print("\n".join(md))
    if args.compare:
        print("\n## Compared with " + args.compare + "\n\n" + compare(args.compare, result))
    print(f"\nwrote {args.out}/report.md, {args.out}/results.json" + "".join(", " + c for c in charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
