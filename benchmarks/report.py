"""`vtalign bench`: every benchmark suite, the static GPU table and the H100 cost
model in one report, from one run.

    vtalign bench [--size small|full] [--out bench] [--compare OLD.json] [--suites ...]

Writes OUT/report.md, OUT/NAME.md per suite, OUT/results.json (machine, versions,
exact command, thread settings, the load on the machine around each suite, every
measured row with its per-round times) and OUT/speedup_<suite>.png. `--compare
OLD.json` prints what got faster or slower since an earlier results.json.
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

from . import _measure
from .run import SUITES, machine, suite_module, suite_report, write_atomic

# H100 SXM5 dense peaks (NVIDIA H100 datasheet): the floors below are what a
# kernel could reach at 100% of one unit, i.e. lower bounds, not predictions.
H100 = dict(tf32=494.7e12, bf16=989.4e12, fp32=66.9e12, hbm=3.35e12)


def cost_model() -> list[dict]:
    """docs/design.md §5 floors for representative sizes, per kernel."""
    rows = []

    def add(kernel, workload, flops=0.0, bytes_=0.0, unit="tf32", note=""):
        t = max(flops / H100[unit] if flops else 0.0, bytes_ / H100["hbm"] if bytes_ else 0.0)
        rows.append(dict(kernel=kernel, workload=workload, gflop=flops / 1e9, gbytes=bytes_ / 1e9,
                         unit=unit, floor_ms=t * 1e3, note=note))

    for n, d in ((50_000, 768), (1_000_000, 1024)):
        add("knn (tf32)", f"L=1, N={n:,}, D={d}", 2 * n * n * d, n * d * 4, "tf32", "2·L·N²·D")
        add("knn (tf32x3, default fp32)", f"L=1, N={n:,}, D={d}", 3 * 2 * n * n * d, n * d * 4, "tf32",
            "3 TF32 products")
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


def speedups(rows: list[dict], role: str = "method") -> list[dict]:
    """For each (suite, case), every other implementation's time over vtalign's, per round:
    the median ratio and its min–max. role "floor" gives vtalign's time over each floor's
    (how far vtalign is from the physical limit; below 1 where it needs fewer products)."""
    base = {(r["suite"], r["case"]): r for r in rows if r["impl"] == "vtalign" and r.get("seconds")}
    out = []
    for r in rows:
        b = base.get((r["suite"], r["case"]))
        if r["impl"] == "vtalign" or not b or not r.get("seconds") or r.get("role", "method") != role:
            continue
        num, den = (r, b) if role == "method" else (b, r)
        st = _measure.ratio_stats(num.get("times") or [num["seconds"]], den.get("times") or [den["seconds"]])
        out.append(dict(suite=r["suite"], case=r["case"], impl=r["impl"], vtalign_s=b["seconds"], other_s=r["seconds"],
                        speedup=st["median"], speedup_min=st["min"], speedup_max=st["max"], rounds=st["rounds"]))
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
    err = [[v - r["speedup_min"] for v, r in zip(vals, rows)], [r["speedup_max"] - v for v, r in zip(vals, rows)]]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.2), dpi=110)
    ax.barh(range(len(rows)), vals, xerr=err, capsize=2,
            color=["tab:green" if v >= 1 else "tab:red" for v in vals])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("other implementation's time / vtalign's (median over rounds, bars: min–max; >1: vtalign faster)",
                  fontsize=7)
    ax.set_title(f"{suite}: vtalign speed-up", fontsize=10)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


# A re-run reproduces a published speed-up when its median lands within this factor.
REPRODUCE_TOL = 0.25


def compare(old_path: str, new: dict) -> str:
    """Markdown: each speed-up of `new` beside the one in an earlier results.json (does it
    reproduce within ±25%?), then each method's time, new over old."""
    with open(old_path) as f:
        old = json.load(f)
    prev_sp = {(r["suite"], r["case"], r["impl"]): r for r in old.get("speedups", []) + old.get("limits", [])}
    lines = ["| suite | case | compared with | old speed-up | new speed-up | new/old | within ±25% |",
             "|---|---|---|---|---|---|---|"]
    for r in new["speedups"] + new.get("limits", []):
        o = prev_sp.get((r["suite"], r["case"], r["impl"]))
        if o:
            q = r["speedup"] / o["speedup"]
            lines.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {o['speedup']:.2f}x | {r['speedup']:.2f}x "
                         f"({r.get('speedup_min', r['speedup']):.2f}–{r.get('speedup_max', r['speedup']):.2f}) | "
                         f"{q:.2f} | {'yes' if abs(q - 1) <= REPRODUCE_TOL else '**no**'} |")
    prev = {(r["suite"], r["case"], r["impl"]): r for r in old.get("rows", [])}
    lines += ["", "| suite | case | impl | old s | new s | new/old |", "|---|---|---|---|---|---|"]
    for r in new["rows"]:
        o = prev.get((r["suite"], r["case"], r["impl"]))
        if o and o.get("seconds") and r.get("seconds"):
            ratio = r["seconds"] / o["seconds"]
            tag = "slower" if ratio > 1.05 else "faster" if ratio < 0.95 else "same"
            lines.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {o['seconds']:.4g} | {r['seconds']:.4g} | "
                         f"{ratio:.2f} ({tag}) |")
    return "\n".join(lines)


def main_compare(argv: list[str] | None = None) -> int:
    """`python -m vtalign.benchmarks.report --compare-only OLD.json NEW.json`: the table above."""
    old, new = argv
    with open(new) as f:
        print(compare(old, json.load(f)))
    return 0


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("torch", "triton", "numpy", "faiss", "tslearn", "pysdtw", "numba"):
        try:
            m = importlib.import_module(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # a missing peer is reported as missing, not an error
            out[mod] = None
    import vtalign
    out["vtalign"] = vtalign.__version__
    return out


# Another process using more than this many cores on average marks a suite as measured
# on a busy machine (its numbers are not published: benchmarks/README.md).
BUSY_CORES = 0.2


def quiet_check(seconds: float = 3.0) -> dict:
    """Foreign CPU use while this process sleeps: what else is running right now."""
    a = _measure.cpu_times()
    time.sleep(seconds)
    return _measure.foreign_load(a, _measure.cpu_times())


def wait_for_quiet(max_wait: float, log) -> dict:
    """Sample the machine until nothing else runs (or `max_wait` seconds passed)."""
    t0 = time.perf_counter()
    while True:
        q = quiet_check()
        if q["foreign_cores"] <= BUSY_CORES or time.perf_counter() - t0 >= max_wait:
            return q
        log(f"machine busy ({q['foreign_cores']:.2f} cores used by other processes); waiting ...")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtalign bench", description="every benchmark suite vs installed peers, by "
                                "the protocol of benchmarks/README.md")
    p.add_argument("--size", choices=["small", "full"], default="small")
    p.add_argument("--out", default="bench", help="folder for report.md, results.json, NAME.md and the charts")
    p.add_argument("--compare", default=None, help="an earlier results.json")
    p.add_argument("--suites", nargs="+", default=None, help=f"subset of {SUITES}")
    p.add_argument("--refuse-busy", action="store_true",
                   help="stop (exit 3) when another process keeps the machine busy before a suite")
    p.add_argument("--no-static", action="store_true",
                   help="leave out the static GPU compile table (it takes a minute or two)")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="seconds to wait for a busy machine to go quiet before each suite (default 60)")
    return p


def _default_suites() -> list[str]:
    return [s for s in SUITES if s != "gpu_static"]


def _load_line(name: str, ld: dict) -> str:
    mark = " **BUSY: these numbers are not publishable**" if ld["busy"] else ""
    return (f"{name}: load average {ld['loadavg_before']:.2f} before, {ld['loadavg_after']:.2f} after; "
            f"other processes {ld['foreign_cores_before']:.2f} cores just before and "
            f"{ld['foreign_cores_during']:.2f} cores on average during the suite; steal "
            f"{ld['steal_cores_during']:.2f} cores.{mark}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    suites = _default_suites() if args.suites is None else args.suites
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"--suites: unknown suite(s) {unknown}; choose from {SUITES}")
    if args.compare and not os.path.isfile(args.compare):
        raise FileNotFoundError(f"--compare: no such results file: {args.compare}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out: {args.out} exists and is not a folder")
    os.makedirs(args.out, exist_ok=True)
    command = "vtalign bench " + " ".join(shlex.quote(a) for a in argv)
    env = _measure.worker_env()
    log = lambda msg: print(f"[vtalign bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    _measure.RESULTS.clear()
    sections, load, t0 = [], {}, time.perf_counter()
    for name in suites:
        q = wait_for_quiet(args.max_wait, log)
        if q["foreign_cores"] > BUSY_CORES and args.refuse_busy:
            log(f"refused: other processes use {q['foreign_cores']:.2f} cores; nothing else may run during a "
                "benchmark")
            return 3
        log(f"{name} ({args.size}) ...")
        before, la0, t = _measure.cpu_times(), os.getloadavg()[0], time.perf_counter()
        body = suite_module(name).run(args.size, progress=lambda m, n=name: log(f"{n}: {m}"))
        during = _measure.foreign_load(before, _measure.cpu_times())
        load[name] = dict(loadavg_before=la0, loadavg_after=os.getloadavg()[0],
                          foreign_cores_before=q["foreign_cores"], foreign_cores_during=during["foreign_cores"],
                          steal_cores_during=during["steal_cores"], seconds=time.perf_counter() - t,
                          busy=max(q["foreign_cores"], during["foreign_cores"]) > BUSY_CORES)
        sections.append(f"## {name} ({load[name]['seconds']:.0f} s)\n\n{_load_line(name, load[name])}\n\n{body}")
        write_atomic(os.path.join(args.out, f"{name}.md"),
                     suite_report(name, command, f"{_load_line(name, load[name])}\n\n{body}"))
    from .bench_gpu_static import format_rows
    from .bench_gpu_static import static_rows as compile_static

    static_rows, static_md = [], "(left out: --no-static)"
    if not args.no_static:
        log("static GPU compile ...")
        static_rows = compile_static()
        static_md = format_rows(static_rows)
    rows = list(_measure.RESULTS)
    sp, limits = speedups(rows), speedups(rows, role="floor")
    threads = next((r["threads"] for r in rows if r.get("threads")), None)
    result = dict(command=command, machine=machine(), versions=versions(), size=args.size,
                  omp_wait_policy=env.get("OMP_WAIT_POLICY"), threads=threads, seconds=time.perf_counter() - t0,
                  load=load, busy=any(v["busy"] for v in load.values()), rows=rows, speedups=sp, limits=limits,
                  static=static_rows, cost_model=cost_model())
    write_atomic(os.path.join(args.out, "results.json"), json.dumps(result, indent=1) + "\n")
    charts = [c for c in (chart(os.path.join(args.out, f"speedup_{s}.png"), s, sp) for s in suites) if c]
    f3 = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rr = lambda r: f"**{r['speedup']:.2f}x** ({r['speedup_min']:.2f}–{r['speedup_max']:.2f})"  # noqa: E731
    md = [f"# vtalign bench ({args.size})", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v), "",
          f"Every worker: OMP_WAIT_POLICY={result['omp_wait_policy']}, threads {threads}.", "",
          *[_load_line(n, ld) + "  " for n, ld in load.items()], "",
          "## Speed-ups (other implementation's time / vtalign's, per round: median (min–max))", "",
          _table([{**r, "ratio": rr(r)} for r in sp],
                 ["suite", "case", "impl", "vtalign_s", "other_s", "rounds", "ratio"],
                 dict(vtalign_s=f3, other_s=f3)), "",
          "## Against the physical limit (vtalign's time / the bare products' time)", "",
          _table([{**r, "ratio": rr(r)} for r in limits], ["suite", "case", "impl", "vtalign_s", "other_s", "ratio"],
                 dict(vtalign_s=f3, other_s=f3)), "",
          *sections, "", "## Static GPU table (no GPU needed)", "", static_md, "",
          "## H100 cost-model floors", "",
          _table(result["cost_model"], ["kernel", "workload", "gflop", "gbytes", "unit", "floor_ms", "note"],
                 dict(gflop=f3, gbytes=f3, floor_ms=f3)), "",
          *[f"![{os.path.basename(c)}]({os.path.basename(c)})" for c in charts]]
    write_atomic(os.path.join(args.out, "report.md"), "\n".join(md) + "\n")
    print("\n".join(md))
    if args.compare:
        print("\n## Compared with " + args.compare + "\n\n" + compare(args.compare, result))
    if result["busy"]:
        log("WARNING: another process used the machine during this run; see the load lines in report.md")
    print(f"\nwrote {args.out}/report.md, {args.out}/results.json" + "".join(", " + c for c in charts))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare-only"]:
        sys.exit(main_compare(sys.argv[2:]))
    sys.exit(main())
