"""The measuring protocol every suite follows (written down in benchmarks/README.md).

- Each method runs in its own fresh interpreter (`python -m <suite module> --worker SPEC`),
  so imports, allocator state, thread pools and peak memory belong to it alone.
- Methods alternate over rounds (A B C, then C B A, ...): slow drifts of the machine reach
  every method alike. At least `MIN_ROUNDS` rounds; `SHORT_ROUNDS` when vtalign's time is
  below `SHORT_S` seconds, where one disturbed run moves a ratio most.
- Inside a worker: inputs are built, the method is warmed up (imports, JIT, thread pools),
  one call on the real problem measures the peak memory, then `reps` more calls are timed
  and their median is the worker's time.
- A ratio is formed per round (other method's time / vtalign's time in the same round);
  the report gives the median ratio and its min–max over the rounds.
- Every worker gets the same environment: the OpenMP wait policy and thread count of the
  run (`worker_env`), stated in the report.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

MIN_ROUNDS = 3
SHORT_ROUNDS = 5
SHORT_S = 1.0
# Idle OpenMP workers spin by default; a spinning worker of one library burns the slice a
# runnable thread of another needs. Every worker of every method gets the same policy.
DEFAULT_WAIT_POLICY = "passive"
# Each timed worker spends about this long in its repeated calls (at least one call).
REP_BUDGET_S = 2.0
MAX_REPS = 15


# --------------------------------------------------------------------- worker side
def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def reset_peak() -> None:
    """Reset VmHWM so the next peak reading covers only what follows (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def thread_settings() -> dict:
    """The thread counts a worker ran with, as each library reports them."""
    import torch

    out = {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    for mod, fn in (("faiss", "omp_get_max_threads"), ("numba", "get_num_threads")):
        if mod in sys.modules:
            out[mod] = getattr(sys.modules[mod], fn)()
    return out


def time_calls(step: Callable[[], object], *, warmup: Callable[[], object] | None = None,
               reps: int | None = None, budget_s: float = REP_BUDGET_S) -> dict:
    """Warm up, measure the peak memory of one call, then time `reps` calls.

    `warmup` (default: `step`) pays first-call costs: imports, JIT, thread pools. `reps`
    None picks as many calls as fit in `budget_s` (at least one); 0 times the measuring
    call itself, for calls of many seconds. Returns
    seconds (median of the timed calls), first_s (the memory-measuring call), reps,
    peak_mib (peak RSS of the measuring call over the RSS just before it) and the CPU
    seconds of the median call (all threads of the process).
    """
    (warmup or step)()
    rss0, _ = rss_mib()
    reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = rss_mib()
    peak_mib = max(0.0, peak - rss0)
    n = reps if reps is not None else max(1, min(MAX_REPS, int(budget_s / max(first, 1e-9))))
    if n == 0:  # calls of many seconds: the measuring call is the timed one
        return dict(seconds=first, cpu_s=first_cpu, first_s=first, reps=0, peak_mib=peak_mib)
    walls, cpus = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    order = sorted(range(n), key=walls.__getitem__)
    mid = order[(n - 1) // 2]
    return dict(seconds=walls[mid], cpu_s=cpus[mid], first_s=first, reps=n, peak_mib=peak_mib)


def worker_main(worker: Callable[[dict], dict]) -> None:
    """`python -m MODULE --worker SPEC`: run one measurement and print it as one JSON line."""
    spec = json.loads(sys.argv[2])
    out = worker(spec)
    out.setdefault("threads", thread_settings())
    print(json.dumps(out))


# --------------------------------------------------------------------- driver side
def worker_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)
    return env


def run_worker(module: str, spec: dict, timeout: float = 1800) -> dict:
    """One measurement in a fresh interpreter; {"error": ...} if it failed or timed out."""
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=worker_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed: {tail[:300]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(module: str, methods: dict[str, dict], *, baseline: str = "vtalign",
            min_rounds: int = MIN_ROUNDS, short_rounds: int = SHORT_ROUNDS, short_s: float = SHORT_S,
            once: tuple[str, ...] = (), timeout: float = 1800,
            progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Alternate fresh-process workers of `methods` (label -> worker spec) over rounds.

    Methods in `once` (too slow to repeat, or not compared) run in the first round only.
    Returns label -> {"runs": [worker results], "error": str | None}.
    """
    res: dict[str, dict] = {m: {"runs": [], "error": None} for m in methods}
    labels = list(methods)
    r = 0
    while True:
        order = labels if r % 2 == 0 else labels[::-1]
        for m in order:
            if res[m]["error"] or (m in once and res[m]["runs"]):
                continue
            if progress:
                progress(f"round {r + 1}: {m}")
            out = run_worker(module, methods[m], timeout)
            if "error" in out:
                res[m]["error"] = out["error"]
            else:
                res[m]["runs"].append(out)
        r += 1
        base = res.get(baseline, {}).get("runs")
        want = min_rounds
        if base and statistics.median(x["seconds"] for x in base) < short_s:
            want = short_rounds
        if r >= want:
            return res


def summary(runs: list[dict]) -> dict:
    """Median, min and max seconds over rounds; the largest peak; the rounds' times."""
    t = [x["seconds"] for x in runs]
    peaks = [x["peak_mib"] for x in runs if x.get("peak_mib") is not None]
    return dict(seconds=statistics.median(t), seconds_min=min(t), seconds_max=max(t), times=t,
                peak_mib=max(peaks) if peaks else None, rounds=len(t),
                reps=[x.get("reps") for x in runs], threads=runs[0].get("threads"))


def ratio_stats(other: list[float], base: list[float]) -> dict | None:
    """Per-round ratios other/base (rounds paired in order): median, min, max."""
    pairs = list(zip(other, base))
    if not pairs:
        return None
    rs = [o / b for o, b in pairs if b > 0]
    return dict(median=statistics.median(rs), min=min(rs), max=max(rs), rounds=len(rs))


# Rows every suite records while it runs; `report` (what `vtalign bench` runs) turns them
# into results.json, ratio charts and the README table.
RESULTS: list[dict] = []


def record(suite: str, case: str, impl: str, stats: dict | None = None, *, role: str = "method",
           **extra) -> dict:
    """Store one method's measurement of a case. Within a (suite, case), the row with impl
    "vtalign" is the one every other implementation is compared with; role "floor" marks
    a physical limit (the bare products of the same sizes), reported separately."""
    row = dict(suite=suite, case=case, impl=impl, role=role, **(stats or {}), **extra)
    RESULTS.append(row)
    return row


def record_compared(suite: str, case: str, res: dict[str, dict], *, floors: tuple[str, ...] = (),
                    **extra) -> dict[str, dict]:
    """Record every method of one `compare` result; returns label -> summary (errors left out)."""
    out = {}
    for label, r in res.items():
        if r["runs"]:
            out[label] = summary(r["runs"])
            record(suite, case, label, out[label], role="floor" if label in floors else "method", **extra)
    return out


def cpu_times() -> dict:
    """System-wide CPU jiffies (busy, steal, total) and this process tree's CPU seconds."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    steal = vals[7] if len(vals) > 7 else 0
    total = sum(vals[:8])
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return dict(busy=total - idle - steal, steal=steal, total=total, ours=ours, wall=time.time())


def foreign_load(a: dict, b: dict) -> dict:
    """CPU used by anything but this process tree between two `cpu_times` readings,
    in cores (averaged over the interval), and the hypervisor's steal, in cores."""
    hz = os.sysconf("SC_CLK_TCK")
    wall = max(b["wall"] - a["wall"], 1e-9)
    busy = (b["busy"] - a["busy"]) / hz
    return dict(foreign_cores=max(0.0, busy - (b["ours"] - a["ours"])) / wall,
                steal_cores=(b["steal"] - a["steal"]) / hz / wall, seconds=wall)
