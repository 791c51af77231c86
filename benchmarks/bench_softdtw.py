"""Soft-DTW on the CPU: vtalign (C++) vs tslearn's SoftDTWLossPyTorch and pysdtw.

`python -m benchmarks.run softdtw [--size small|full]`.

Every measurement runs in a fresh subprocess (`python -m benchmarks.bench_softdtw
--worker SPEC`) so that its peak RSS (`resource.getrusage(...).ru_maxrss`) belongs to
it alone: the worker builds the inputs, warms the method up on a tiny problem of the
same dtype (numba compiles there), reads its current RSS as the baseline, runs one
forward+backward on the real problem and reports peak − baseline as the op's extra
memory; then it times `reps` more forward+backward passes and keeps the fastest. The
full size runs each method in several such workers, in rounds that alternate the
methods, and keeps the fastest time and the largest peak.

Forward+backward = `loss = f(x, y).sum(); loss.backward()` with x requiring grad,
squared Euclidean cost, γ = 1, all cores (torch and numba defaults). ns/cell is the
wall time over B·N·M DP cells (forward and backward together, cost GEMMs included).
Memory budget (issue 3): peak extra ≤ 4·B·N·M·(bytes per element) + 64 MiB.

The "GEMMs only" row times, in the same protocol, just the two dense products a
GEMM-based gradient w.r.t. x needs (x·yᵀ for the cost, E·y for the gradient) with
torch's bmm: the best peer's time over it bounds the speed-up that any such
soft-DTW could reach here, however fast its DP.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from benchmarks._measure import record

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SIZES = {
    "small": dict(dp=[(4, 64, 64, 16)], pairwise=(8, 8, 16, 16, 16), reps=2),
    "full": dict(dp=[(32, 256, 256, 64), (4, 2048, 2048, 64)], pairwise=(64, 64, 32, 32, 64), reps=3,
                 short_reps=10, rounds=3),
}
METHODS = ("vtalign", "pysdtw", "tslearn")
# Not an implementation: the time of the dense products in vtalign's step alone, which
# bounds the speed-up any GEMM-based soft-DTW can reach on this machine.
FLOOR = "GEMMs only"
# Idle OpenMP workers (torch's, numba's and ours share one libgomp) spin by default; on
# a shared machine a spinning worker burns the time slice another runnable thread
# needs, which inflates every method's time many-fold. Workers therefore sleep when
# idle unless the caller sets OMP_WAIT_POLICY itself (the report states the policy).
WAIT_POLICY = "passive"


# ------------------------------------------------------------------ worker side
def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _make_fn(method: str, gamma: float):
    import torch

    if method == "vtalign":
        import vtalign

        return lambda x, y: vtalign.soft_dtw(x, y, gamma, backend="cpp")
    if method == "pysdtw":
        import pysdtw

        mod = pysdtw.SoftDTW(gamma=gamma, use_cuda=False)
        return lambda x, y: mod(x, y)
    if method == "tslearn":
        from tslearn.metrics import SoftDTWLossPyTorch

        mod = SoftDTWLossPyTorch(gamma=gamma)
        return lambda x, y: mod(x, y)
    if method == "vtalign-pairwise":
        import vtalign

        return lambda x, y: vtalign.soft_dtw_pairwise(x, y, gamma, backend="cpp")
    if method == "vtalign-loop":
        import vtalign

        def loop(x, y):
            return torch.stack([torch.stack([vtalign.soft_dtw(x[a:a + 1], y[b:b + 1], gamma, backend="cpp")[0]
                                             for b in range(y.shape[0])]) for a in range(x.shape[0])])
        return loop
    if method == "pysdtw-expanded":  # how VT-TWINS-style code gets B1 x B2 scores
        import pysdtw

        mod = pysdtw.SoftDTW(gamma=gamma, use_cuda=False)

        def expanded(x, y):
            B1, B2 = x.shape[0], y.shape[0]
            xe = x[:, None].expand(B1, B2, *x.shape[1:]).reshape(B1 * B2, *x.shape[1:])
            ye = y[None].expand(B1, B2, *y.shape[1:]).reshape(B1 * B2, *y.shape[1:])
            return mod(xe, ye).view(B1, B2)
        return expanded
    raise ValueError(method)


def worker(spec: dict) -> dict:
    import torch

    dtype = getattr(torch, spec["dtype"])
    g = torch.Generator().manual_seed(0)
    B1, B2, N, M, D = spec["B1"], spec["B2"], spec["N"], spec["M"], spec["D"]
    x = (torch.randn(B1, N, D, generator=g, dtype=torch.float64) / D ** 0.5).to(dtype)
    y = (torch.randn(B2, M, D, generator=g, dtype=torch.float64) / D ** 0.5).to(dtype)
    if spec["method"] == FLOOR:
        # The products a GEMM-based gradient w.r.t. x cannot avoid: the cost's x·yᵀ and E·y
        # (E [B, N, M] is a stand-in alignment). torch's bmm on the same threads.
        prod = torch.empty(B1, N, M, dtype=dtype)
        E = torch.rand(B1, N, M, generator=g, dtype=torch.float64).to(dtype)

        def step(a, b):
            torch.bmm(a, b.transpose(1, 2), out=prod)
            return float(torch.bmm(E[:a.shape[0], :a.shape[1], :b.shape[1]], b)[0, 0, 0])
    else:
        fn = _make_fn(spec["method"], 1.0)

        def step(a, b):
            a = a.detach().requires_grad_()
            loss = fn(a, b).sum()
            loss.backward()
            return float(loss.detach())

    step(x[:2, :8].contiguous(), y[:2, :8].contiguous())  # warm-up / JIT on a tiny problem
    base = _rss_now()
    t = time.perf_counter()
    step(x, y)
    first = time.perf_counter() - t
    extra = max(0, _peak() - base)
    times, cpus = [first], []
    for _ in range(spec["reps"]):
        t, c = time.perf_counter(), time.process_time()
        step(x, y)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"time": min(times), "cpu": min(cpus) if cpus else float("nan"), "extra": extra}


# ------------------------------------------------------------------ driver side
def _available(method: str) -> str | None:
    mod = {"pysdtw": "pysdtw", "tslearn": "tslearn", "pysdtw-expanded": "pysdtw"}.get(method)
    if mod is None:
        return None
    try:
        __import__(mod)
    except ImportError:
        return f"{mod} is not installed (pip install {mod})"
    return None


def _measure(spec: dict, timeout: float = 900) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_softdtw", "--worker", json.dumps(spec)]
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed: {tail[:160]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _skip_reason(method: str, B: int, N: int, M: int, D: int, itemsize: int) -> str | None:
    why = _available(method)
    if why:
        return why
    if method == "tslearn":
        dense = B * N * M * D * itemsize
        if dense > (2 << 30):
            return (f"skipped: its default distance builds a B×N×M×D tensor "
                    f"({dense / 2**30:.1f} GiB, several copies with autograd)")
    return None


def _merge(old: dict | None, new: dict) -> dict:
    """Two measurements of one method -> the fastest time and CPU time, the largest peak."""
    if old is None or "error" in new:
        return new if old is None or "error" in old else old
    if "error" in old:
        return new
    return {"time": min(old["time"], new["time"]), "cpu": min(old["cpu"], new["cpu"]),
            "extra": max(old["extra"], new["extra"])}


def run(size: str = "full") -> str:
    cfg = SIZES[size]
    reps, rounds = cfg["reps"], cfg.get("rounds", 1)
    policy = os.environ.get("OMP_WAIT_POLICY", WAIT_POLICY)
    load = os.getloadavg()[0]
    lines = [f"OMP_WAIT_POLICY={policy} in every worker; load average at start {load:.1f} "
             f"on {os.cpu_count()} cores.", "",
             "Forward+backward (x requires grad), squared Euclidean cost, γ = 1. Time is the fastest "
             f"of the runs, over {rounds} round(s) that alternate the methods (tslearn: one run); "
             "ns/cell = time / (B·N·M); peak = peak RSS of a fresh process over its RSS just before "
             "the call (inputs already allocated), the largest over the rounds; "
             "budget = 4·B·N·M·bytes + 64 MiB.",
             "",
             "CPU time is the process's (all threads) for the fastest timed run.", "",
             "| B | N = M | D | dtype | method | time (ms) | CPU time (ms) | ns/cell | peak extra (MiB) | "
             "within budget | speed-up vs fastest peer (time / CPU time) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for (B, N, M, D) in cfg["dp"]:
        for dt, item in (("float32", 4), ("float64", 8)):
            res = {}
            todo = []
            for method in METHODS:
                why = _skip_reason(method, B, N, M, D, item)
                if why:
                    notes.append(f"{method} at B={B}, N=M={N}, {dt}: {why}")
                else:
                    todo.append(method)
            # Rounds alternate the methods (a fresh worker each), so the slow drifts of a
            # shared VM reach every method alike; a round's repeats give the fastest-of,
            # more for sub-second runs (tslearn, at seconds per run, runs once).
            todo.append(FLOOR)
            for _ in range(rounds):
                for method in todo:
                    if method == "tslearn" and method in res:
                        continue
                    r = (cfg.get("short_reps", reps) if N <= 512 else reps) if method != "tslearn" else 1
                    res[method] = _merge(res.get(method), _measure(dict(method=method, dtype=dt, B1=B, B2=B,
                                                                        N=N, M=M, D=D, reps=r)))
            peers = [res[m] for m in ("pysdtw", "tslearn") if m in res and "time" in res[m]]
            best = min(p["time"] for p in peers) if peers else None
            best_cpu = min(p["cpu"] for p in peers) if peers else None
            budget = 4 * B * N * M * item + (64 << 20)
            for method, r in res.items():
                if "error" in r:
                    notes.append(f"{method} at B={B}, N=M={N}, {dt}: {r['error']}")
                    continue
                cells = B * N * M
                speed = (f"{best / r['time']:.1f}× / {best_cpu / r['cpu']:.1f}×"
                         if (best and method == "vtalign") else "")
                if method == FLOOR:  # what a step made of these products alone would reach
                    speed = f"bound: {best / r['time']:.1f}× / {best_cpu / r['cpu']:.1f}×" if best else ""
                ok = "yes" if r["extra"] <= budget else "no"
                if method != FLOOR:
                    record("softdtw", f"fwd+bwd B={B} N=M={N} D={D} {dt}", method, r["time"],
                           peak_mib=r["extra"] / 2**20)
                lines.append(f"| {B} | {N} | {D} | {dt} | {method} | {r['time'] * 1e3:.1f} | {r['cpu'] * 1e3:.1f} | "
                             f"{r['time'] / cells * 1e9:.1f} | {'' if method == FLOOR else round(r['extra'] / 2**20)} | "
                             f"{ok if method == 'vtalign' else ''} | {speed} |")
    B1, B2, N, M, D = cfg["pairwise"]
    lines += ["", f"All pairs, B1 = {B1}, B2 = {B2}, N = M = {N}, D = {D}, float32, forward+backward:", "",
              "| method | time (ms) | speed-up of soft_dtw_pairwise |", "|---|---|---|"]
    pres = {}
    for method in ("vtalign-pairwise", "vtalign-loop", "pysdtw-expanded"):
        why = _available(method)
        if why:
            notes.append(f"{method}: {why}")
            continue
        pres[method] = _measure(dict(method=method, dtype="float32", B1=B1, B2=B2, N=N, M=M, D=D,
                                     reps=1 if method == "vtalign-loop" else reps))
    base = pres.get("vtalign-pairwise", {}).get("time")
    for method, r in pres.items():
        if "error" in r:
            notes.append(f"{method}: {r['error']}")
            continue
        sp = f"{r['time'] / base:.1f}×" if base and method != "vtalign-pairwise" else ""
        record("softdtw", f"pairwise B1=B2={B1} N=M={N} D={D}", "vtalign" if method == "vtalign-pairwise" else method,
               r["time"])
        lines.append(f"| {method} | {r['time'] * 1e3:.1f} | {sp} |")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        print(run(sys.argv[1] if len(sys.argv) > 1 else "small"))
