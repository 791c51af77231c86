"""Exact cosine kNN and all-layer-pair mutual kNN on the CPU.

`vtalign bench --suites knn`. Every method runs in fresh processes, alternated over
rounds (benchmarks/README.md). Features are `randn` rows (norm ≈ √D, the scale encoder
outputs come at); every method normalises them itself, inside the timed call.

- Exact self-kNN of N rows: vtalign `cosine_knn` against faiss-cpu's exact
  `IndexFlatIP` on normalised rows (k + 1 results, self dropped), and against the bare
  products of the same sizes (the physical limit: any exact search computes them).
- All layer pairs of two 13-layer stacks: vtalign `layerwise_alignment` against plain
  torch done sensibly (one dense kNN per layer, dense masks, pairs by products). The
  per-pair loop of platonic-rep is in the metrics suite.
"""
from __future__ import annotations

import os
import tempfile

import torch

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

SIZES = {
    "small": dict(pairs=dict(L=6, N=512, D=256, k=10), knn=[dict(N=8000, D=256, k=10)]),
    "full": dict(pairs=dict(L=13, N=1024, D=768, k=10), knn=[dict(N=20000, D=768, k=10),
                                                             dict(N=50000, D=768, k=10)]),
}
SELF_LABELS = {"vtalign": "vtalign", "faiss": "faiss-cpu IndexFlatIP", "gemm": "bare GEMM"}


# ---------------------------------------------------------------- baselines
def once_per_layer(fa: torch.Tensor, fb: torch.Tensor, k: int) -> torch.Tensor:
    """Plain torch done sensibly: one dense kNN per layer, dense masks, pairs by products.
    fa, fb: [N, L, D] -> [La, Lb] mutual kNN scores."""
    n = fa.shape[0]
    rows = torch.arange(n).unsqueeze(1)

    def masks(f):
        out = []
        for layer in range(f.shape[1]):
            x = torch.nn.functional.normalize(f[:, layer], dim=-1)
            idx = (x @ x.T).fill_diagonal_(float("-inf")).topk(k, dim=1).indices
            m = torch.zeros(n, n)
            m[rows, idx] = 1.0
            out.append(m)
        return out

    ma, mb = masks(fa), masks(fb)
    out = torch.empty(len(ma), len(mb), dtype=torch.float64)
    for i, a in enumerate(ma):
        for j, b in enumerate(mb):
            out[i, j] = float((a * b).sum() / (n * k))
    return out


def _self_knn_fn(impl: str, x: torch.Tensor, k: int):
    n, d = x.shape
    if impl == "vtalign":
        import vtalign

        return lambda: vtalign.cosine_knn(x, k)[1], lambda: vtalign.cosine_knn(x[:512], k)
    if impl == "faiss":
        import faiss
        import numpy as np

        def fn(rows=x):
            xn = torch.nn.functional.normalize(rows, dim=-1).numpy()
            index = faiss.IndexFlatIP(d)
            index.add(xn)
            _, idx = index.search(xn, k + 1)
            return torch.from_numpy(idx[:, 1:].astype(np.int64))
        return fn, lambda: fn(x[:512])
    if impl == "gemm":
        # the products of the same sizes, tiled as vtalign tiles them, no selection
        from vtalign.ops.knn import DEFAULT_WORKSPACE, _tile_side

        def gemm(rows=x):
            xn = torch.nn.functional.normalize(rows, dim=-1)
            m = rows.shape[0]
            side = _tile_side(m, 4, DEFAULT_WORKSPACE)
            buf = torch.empty(side, side)
            for i0 in range(0, m, side):
                for j0 in range(0, m, side):
                    a, b = xn[i0:i0 + side], xn[j0:j0 + side]
                    torch.mm(a, b.T, out=buf[:a.shape[0], :b.shape[0]])
        return gemm, lambda: gemm(x[:512])
    raise ValueError(impl)


def worker(spec: dict) -> dict:
    gen = torch.Generator().manual_seed(0)
    if spec["kind"] == "self":
        x = torch.randn(spec["N"], spec["D"], generator=gen)
        fn, warm = _self_knn_fn(spec["impl"], x, spec["k"])
        kept = []
        out = time_calls(lambda: kept.append(fn()), warmup=warm, reps=0)  # seconds a call: one timed call
        if spec.get("save") and kept[-1] is not None:
            torch.save(kept[-1], spec["save"])
        return out
    p = spec
    fa = torch.randn(p["N"], p["L"], p["D"], generator=gen)
    fb = torch.randn(p["N"], p["L"], p["D"], generator=gen)
    if spec["impl"] == "vtalign":
        from vtalign.probe import layerwise_alignment

        fn = lambda: layerwise_alignment(fa, fb, k=p["k"])  # noqa: E731
    else:
        fn = lambda: once_per_layer(fa, fb, p["k"])  # noqa: E731
    return time_calls(fn)


# --------------------------------------------------------------------- report
def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    mod = __name__
    lines = []
    p = cfg["pairs"]
    case = f"all-pairs mutual kNN {p['L']}x{p['L']}, N={p['N']}, D={p['D']}"
    res = compare(mod, {"vtalign": dict(kind="pairs", impl="vtalign", **p),
                        "torch once per layer": dict(kind="pairs", impl="torch", **p)}, progress=progress)
    st = record_compared("knn", case, res)
    lines += [f"## All-pairs mutual kNN: {p['L']}x{p['L']} layer pairs, N={p['N']}, D={p['D']}, k={p['k']}", "",
              _table(st, res)]

    for q in cfg["knn"]:
        with tempfile.TemporaryDirectory(prefix="vtalign-bench-knn-") as tmp:
            lines += _self_knn_case(q, tmp, mod, progress)
    return "\n".join(lines) + "\n"


def _self_knn_case(q: dict, tmp: str, mod: str, progress) -> list[str]:
    """Exact self-kNN of one size: vtalign, faiss and the bare GEMM in alternated rounds."""
    lines = []
    case = f"cosine kNN N={q['N']}, D={q['D']}, k={q['k']}"
    specs = {SELF_LABELS[i]: dict(kind="self", impl=i, save=os.path.join(tmp, f"{i}.pt"), **q)
             for i in ("vtalign", "faiss", "gemm")}
    notes = []
    try:
        import faiss  # noqa: F401
    except ImportError:
        specs.pop(SELF_LABELS["faiss"])
        notes.append("faiss-cpu is not installed (`pip install faiss-cpu`): its row is skipped.")
    res = compare(mod, specs, progress=progress)
    st = record_compared("knn", case, res, floors=("bare GEMM",))
    lines += ["", f"## Exact cosine kNN: N={q['N']:,}, D={q['D']}, k={q['k']} (float32)", "",
              _table(st, res, floors=("bare GEMM",)), ""]
    lines += [f"Input: {q['N'] * q['D'] * 4 / 2**20:.0f} MiB. The bare GEMM row times the N x N x D products "
              "alone; a self-search needs only half of them (each off-diagonal tile serves both of its "
              "blocks), so vtalign can beat it."]
    a, b = os.path.join(tmp, "vtalign.pt"), os.path.join(tmp, "faiss.pt")
    if os.path.exists(a) and os.path.exists(b):
        ia, ib = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        agree = float((ia.unsqueeze(-1) == ib.unsqueeze(-2)).any(-1).float().mean())
        lines.append(f"Neighbour agreement with faiss: {agree * 100:.3f}% of list entries (float32 near-ties).")
    lines += notes
    return lines


def _table(st: dict[str, dict], res: dict[str, dict], floors: tuple[str, ...] = ()) -> str:
    """Median time (min–max) per method, and each other method's time over vtalign's."""
    base = st.get("vtalign")
    out = ["| implementation | seconds, median (min–max) | rounds | peak extra MiB | time / vtalign's, "
           "median (min–max) |", "|---|---|---|---|---|"]
    for label, s in st.items():
        r = ratio_stats(s["times"], base["times"]) if base and label != "vtalign" else None
        rr = f"**{r['median']:.2f}x** ({r['min']:.2f}–{r['max']:.2f})" if r else "1"
        if label in floors and r:
            rr += " (a floor)"
        peak = "" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
        out.append(f"| {label} | {s['seconds']:.3g} ({s['seconds_min']:.3g}–{s['seconds_max']:.3g}) | "
                   f"{s['rounds']} | {peak} | {rr} |")
    out += [f"| {label} | failed: {r['error']} | | | |" for label, r in res.items() if r["error"]]
    return "\n".join(out)


if __name__ == "__main__":
    worker_main(worker)
