"""kNN and all-layer-pair mutual kNN on the CPU, side by side with today's code.

`python -m benchmarks.run knn [--size small|full]`. Each timed path runs in the
same process run (ratios are comparable); kNN at large N runs one fresh process
per implementation so peak memory is that implementation's alone.
"""
from __future__ import annotations

import json
import sys
import time

import torch

from benchmarks._measure import best_of, in_subprocess, record, reset_peak, rss_mib

SIZES = {
    "small": dict(pairs=dict(L=6, N=512, D=256, k=10), knn=dict(N=8000, D=256, k=10)),
    "full": dict(pairs=dict(L=13, N=1024, D=768, k=10), knn=dict(N=50000, D=768, k=10)),
}


# ---------------------------------------------------------------- baselines
def per_pair_loop(fa: torch.Tensor, fb: torch.Tensor, k: int) -> torch.Tensor:
    """platonic-rep's `compute_score` loop (re-implemented from its definition):
    for every layer pair, normalise, dense Gram, argsort, dense masks."""
    def nn(f):
        return (f @ f.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]
    n = fa.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    out = torch.empty(fa.shape[1], fb.shape[1], dtype=torch.float64)
    for i in range(fa.shape[1]):
        for j in range(fb.shape[1]):
            x = torch.nn.functional.normalize(fa[:, i], dim=-1)
            y = torch.nn.functional.normalize(fb[:, j], dim=-1)
            ma = torch.zeros(n, n)
            mb = torch.zeros(n, n)
            ma[rows, nn(x)] = 1.0
            mb[rows, nn(y)] = 1.0
            out[i, j] = float(((ma * mb).sum(1) / k).mean())
    return out


def once_per_layer(fa: torch.Tensor, fb: torch.Tensor, k: int) -> torch.Tensor:
    """Plain torch done sensibly: one dense kNN per layer, dense masks, pairs by products."""
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


# ------------------------------------------------------------ subprocess worker
def _worker(impl: str, n: int, d: int, k: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    x_mib = x.numel() * 4 / 2**20
    if impl == "vtalign":
        import vtalign
        vtalign.cosine_knn(x[:256], k)  # first-call import cost is not the kernel's
        fn = lambda: vtalign.cosine_knn(x, k)[1]  # noqa: E731
    elif impl == "faiss":
        import faiss
        import numpy as np

        def fn():
            xn = torch.nn.functional.normalize(x, dim=-1).numpy()
            index = faiss.IndexFlatIP(d)
            index.add(xn)
            _, idx = index.search(xn, k + 1)
            return torch.from_numpy(idx[:, 1:].astype(np.int64))
    elif impl == "gemm":
        # the bare products of the same sizes, tiled as vtalign tiles them, no selection
        from vtalign.ops.knn import DEFAULT_WORKSPACE, _tile_side

        def fn():
            xn = torch.nn.functional.normalize(x, dim=-1)
            side = _tile_side(n, 4, DEFAULT_WORKSPACE)
            buf = torch.empty(side, side)
            for i0 in range(0, n, side):
                for j0 in range(0, n, side):
                    a, b = xn[i0:i0 + side], xn[j0:j0 + side]
                    torch.mm(a, b.T, out=buf[:a.shape[0], :b.shape[0]])
            return None
    else:
        raise ValueError(impl)
    rss0, _ = rss_mib()
    reset_peak()
    t0 = time.perf_counter()
    idx = fn()
    dt = time.perf_counter() - t0
    _, peak = rss_mib()
    res = dict(impl=impl, seconds=dt, input_mib=x_mib, peak_extra_mib=peak - rss0)
    if idx is not None:
        torch.save(idx, f"/tmp/vtalign_bench_knn_{impl}.pt")
    return res


# --------------------------------------------------------------------- report
def run(size: str = "full") -> str:
    from vtalign.probe import layerwise_alignment

    cfg = SIZES[size]
    lines = []
    p = cfg["pairs"]
    gen = torch.Generator().manual_seed(0)
    fa = torch.randn(p["N"], p["L"], p["D"], generator=gen)
    fb = torch.randn(p["N"], p["L"], p["D"], generator=gen)
    t_vt = best_of(lambda: layerwise_alignment(fa, fb, k=p["k"]))
    t_once = best_of(lambda: once_per_layer(fa, fb, p["k"]), repeat=2)
    t_loop = best_of(lambda: per_pair_loop(fa, fb, p["k"]), repeat=1, warmup=0)
    s_vt = layerwise_alignment(fa, fb, k=p["k"]).scores
    case = f"all-pairs mutual kNN {p['L']}x{p['L']}, N={p['N']}, D={p['D']}"
    record("knn", case, "vtalign", t_vt)
    record("knn", case, "per-pair loop (platonic-rep)", t_loop)
    record("knn", case, "torch once per layer", t_once)
    agree = float((s_vt[:2, :2] - per_pair_loop(fa[:, :2], fb[:, :2], p["k"])).abs().max())
    lines += [f"## All-pairs mutual kNN: {p['L']}x{p['L']} layer pairs, N={p['N']}, D={p['D']}, k={p['k']}",
              "", "| implementation | seconds | vtalign speed-up |", "|---|---|---|",
              f"| per-pair loop (platonic-rep `compute_score`) | {t_loop:.3f} | **{t_loop / t_vt:.1f}x** |",
              f"| torch, kNN once per layer + dense masks | {t_once:.3f} | **{t_once / t_vt:.1f}x** |",
              f"| vtalign `layerwise_alignment` | {t_vt:.3f} | 1.0x |", "",
              f"Max |score difference| vtalign vs per-pair loop on the first 2x2 pairs: {agree:.1e}.", ""]

    q = cfg["knn"]
    rows = []
    for impl in ("vtalign", "faiss", "gemm"):
        try:
            rows.append(in_subprocess("benchmarks.bench_knn", impl, str(q["N"]), str(q["D"]), str(q["k"])))
        except RuntimeError as e:
            if impl == "faiss" and "No module named 'faiss'" in str(e):
                lines.append("faiss-cpu is not installed (`pip install faiss-cpu`): its row is skipped.")
                continue
            raise
    by = {r["impl"]: r for r in rows}
    recall = None
    if "faiss" in by:
        a = torch.load("/tmp/vtalign_bench_knn_vtalign.pt", weights_only=True)
        b = torch.load("/tmp/vtalign_bench_knn_faiss.pt", weights_only=True)
        recall = float((a.unsqueeze(-1) == b.unsqueeze(-2)).any(-1).float().mean())
    names = {"vtalign": "vtalign `cosine_knn` (C++ selection, symmetric tiles)",
             "faiss": "faiss-cpu `IndexFlatIP` (exact)", "gemm": "bare tiled GEMM N x N x D (no selection)"}
    case = f"cosine kNN N={q['N']}, D={q['D']}, k={q['k']}"
    for r in rows:
        record("knn", case, {"vtalign": "vtalign", "faiss": "faiss-cpu IndexFlatIP", "gemm": "bare GEMM"}[r["impl"]],
               r["seconds"], peak_mib=r["peak_extra_mib"])
    lines += [f"## Exact cosine kNN: N={q['N']}, D={q['D']}, k={q['k']} (float32, one fresh process each)", "",
              "| implementation | seconds | peak memory over input (MiB) | vtalign speed-up |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {names[r['impl']]} | {r['seconds']:.2f} | {r['peak_extra_mib']:.0f} | "
                     f"{r['seconds'] / by['vtalign']['seconds']:.2f}x |")
    lines += ["", f"Input: {rows[0]['input_mib']:.0f} MiB. kNN time / bare GEMM time: "
              f"**{by['vtalign']['seconds'] / by['gemm']['seconds']:.2f}** (a self-search reads each "
              "off-diagonal tile twice, so it needs half the products)."]
    if recall is not None:
        lines.append(f"Neighbour agreement with faiss: {recall * 100:.3f}% of lists entries (float32 near-ties).")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    print(json.dumps(_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
