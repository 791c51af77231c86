"""Soft-DTW on the CPU: vtalign (C++) vs pysdtw and tslearn's SoftDTWLossPyTorch.

`vtalign bench --suites soft_dtw`. Every method runs in fresh processes alternated over
rounds (benchmarks/README.md): a worker builds the inputs, warms the method up on a tiny
problem of the same dtype (numba compiles there), measures the peak memory of one
forward+backward on the real problem over its RSS just before, then times more calls
and reports their median.

Forward+backward = `loss = f(x, y).sum(); loss.backward()` with x requiring grad,
squared Euclidean cost, γ = 1, all cores (torch and numba defaults). Rows come at two
scales: unit norm (`randn / √D`) and raw `randn` (norm ≈ √D = 8, as encoder outputs
come); the costs, and so the soft-min's dynamic range, grow with the scale. ns/cell is
the wall time over B·N·M DP cells (forward and backward together, cost GEMMs included).
Memory budget: peak extra ≤ 4·B·N·M·(bytes per element) + 64 MiB.

The "GEMMs only" row times just the two dense products a GEMM-based gradient w.r.t. x
needs (x·yᵀ for the cost, E·y for the gradient) with torch's bmm: the physical limit of
this step here, however fast its DP.
"""
from __future__ import annotations

import os

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

SIZES = {
    "small": dict(dp=[(4, 64, 64, 16, ("unit", "raw"))], pairwise=(8, 8, 16, 16, 16)),
    "full": dict(dp=[(32, 256, 256, 64, ("unit", "raw")), (4, 2048, 2048, 64, ("unit",))],
                 pairwise=(64, 64, 32, 32, 64)),
}
METHODS = ("vtalign", "pysdtw", "tslearn")
# Not an implementation: the dense products of vtalign's step alone, the physical limit.
FLOOR = "GEMMs only"


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
    div = D ** 0.5 if spec.get("scale", "unit") == "unit" else 1.0
    x = (torch.randn(B1, N, D, generator=g, dtype=torch.float64) / div).to(dtype)
    y = (torch.randn(B2, M, D, generator=g, dtype=torch.float64) / div).to(dtype)
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

    xs, ys = x[:2, :8].contiguous(), y[:2, :8].contiguous()
    return time_calls(lambda: step(x, y), warmup=lambda: step(xs, ys), reps=spec.get("reps"))


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


def _r(st: dict, label: str, base: str) -> dict | None:
    if label == base or label not in st or base not in st:
        return None
    return ratio_stats(st[label]["times"], st[base]["times"])


def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    mod = __name__
    policy = os.environ.get("OMP_WAIT_POLICY", "passive")
    lines = [f"OMP_WAIT_POLICY={policy} in every worker of every method.", "",
             "Forward+backward (x requires grad), squared Euclidean cost, γ = 1. Time: median over rounds of "
             "each worker's median call (tslearn, at seconds a call, runs in the first round only); "
             "speed-up: the peer's time over vtalign's in the same round, median (min–max); ns/cell = "
             "time / (B·N·M); peak = peak RSS over the RSS just before the call (inputs allocated), the "
             "largest over the rounds; budget = 4·B·N·M·bytes + 64 MiB.", "",
             "| B | N = M | D | rows | dtype | method | ms, median (min–max) | rounds | ns/cell | peak extra (MiB) | "
             "within budget | peer time / vtalign time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for (B, N, M, D, scales) in cfg["dp"]:
        for scale in scales:
            for dt, item in (("float32", 4), ("float64", 8)):
                methods = {}
                for method in METHODS:
                    why = _skip_reason(method, B, N, M, D, item)
                    if why:
                        notes.append(f"{method} at B={B}, N=M={N}, {dt}: {why}")
                    else:
                        methods[method] = dict(method=method, dtype=dt, B1=B, B2=B, N=N, M=M, D=D, scale=scale)
                methods[FLOOR] = dict(method=FLOOR, dtype=dt, B1=B, B2=B, N=N, M=M, D=D, scale=scale)
                res = compare(mod, methods, once=("tslearn",), progress=progress)
                case = f"fwd+bwd B={B} N=M={N} D={D} {dt}" + (" raw-scale rows" if scale == "raw" else "")
                st = record_compared("soft_dtw", case, res, floors=(FLOOR,))
                budget = 4 * B * N * M * item + (64 << 20)
                for method, r in res.items():
                    if r["error"]:
                        notes.append(f"{method} at B={B}, N=M={N}, {dt}, {scale}: {r['error']}")
                        continue
                    s = st[method]
                    rs = _r(st, "vtalign", FLOOR) if method == FLOOR else _r(st, method, "vtalign")
                    sp = f"{rs['median']:.1f}× ({rs['min']:.1f}–{rs['max']:.1f})" if rs else ""
                    if method == FLOOR and rs:
                        sp = f"the limit: vtalign takes {sp} its time"
                    peak = "" if method == FLOOR else round(s["peak_mib"])
                    ok = ("yes" if s["peak_mib"] * 2**20 <= budget else "no") if method == "vtalign" else ""
                    lines.append(f"| {B} | {N} | {D} | {scale} | {dt} | {method} | {s['seconds'] * 1e3:.1f} "
                                 f"({s['seconds_min'] * 1e3:.1f}–{s['seconds_max'] * 1e3:.1f}) | {s['rounds']} | "
                                 f"{s['seconds'] / (B * N * M) * 1e9:.1f} | {peak} | {ok} | {sp} |")
    B1, B2, N, M, D = cfg["pairwise"]
    lines += ["", f"All pairs, B1 = {B1}, B2 = {B2}, N = M = {N}, D = {D}, unit rows, float32, forward+backward:", "",
              "| method | ms, median (min–max) | rounds | time / soft_dtw_pairwise's |", "|---|---|---|---|"]
    methods = {}
    for method in ("vtalign-pairwise", "vtalign-loop", "pysdtw-expanded"):
        why = _available(method)
        if why:
            notes.append(f"{method}: {why}")
            continue
        label = "vtalign" if method == "vtalign-pairwise" else method
        methods[label] = dict(method=method, dtype="float32", B1=B1, B2=B2, N=N, M=M, D=D)
    res = compare(mod, methods, progress=progress)
    st = record_compared("soft_dtw", f"pairwise B1=B2={B1} N=M={N} D={D}", res)
    for label, s in st.items():
        rs = _r(st, label, "vtalign")
        sp = f"{rs['median']:.1f}× ({rs['min']:.1f}–{rs['max']:.1f})" if rs else ""
        ms = f"{s['seconds'] * 1e3:.1f} ({s['seconds_min'] * 1e3:.1f}–{s['seconds_max'] * 1e3:.1f})"
        lines.append(f"| {label} | {ms} "
                     f"| {s['rounds']} | {sp} |")
    notes += [f"{label}: {r['error']}" for label, r in res.items() if r["error"]]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    worker_main(worker)
