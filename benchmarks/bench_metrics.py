"""All seven alignment metrics over every layer pair: vtalign vs platonic-rep's
per-pair loop (`vtalign bench --suites metrics`).

The baseline is platonic-rep's `compute_score` loop re-implemented here from
its definitions (github.com/minyoungg/platonic-rep, `metrics.py`): for every
(layer of A, layer of B) pair it L2-normalises both layers and runs the metric
from scratch -- dense N x N Grams, argsort for the kNN lists, N x N masks,
HSIC by N x N matrix products, Python dynamic programmes for LCS and edit
distance (torchaudio's `edit_distance` is a Python loop too). Every pair costs
the same (same shapes), so the baseline is timed on a subset of pairs and
scaled to all La x Lb pairs; the table says how many pairs were timed. vtalign
is timed on all pairs, and both sides' scores are compared on the timed pairs.

Each method runs in fresh processes alternated over rounds (benchmarks/README.md); one
worker times every metric of its method. Features: tanh of a shared latent plus noise
(entries in (-1, 1)); both sides normalise rows inside the timed call.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from vtalign.probe.alignment import layerwise_alignment, layerwise_alignments
from vtalign.probe.metrics import METRICS

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

SIZES = {"small": dict(n=256, layers=4, dim=64, k=10, pairs=4),
         "full": dict(n=1024, layers=13, dim=768, k=10, pairs=6)}


# ------------------------------------------------- platonic-rep, per pair
def _knn(x, k):
    return (x @ x.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]


def _masks(ia, ib, n):
    rows = torch.arange(n).unsqueeze(1)
    ma, mb = torch.zeros(n, n), torch.zeros(n, n)
    ma[rows, ia] = 1.0
    mb[rows, ib] = 1.0
    return ma, mb


def _mutual(a, b, k):
    ma, mb = _masks(_knn(a, k), _knn(b, k), a.shape[0])
    return float(((ma * mb).sum(1) / k).mean())


def _cycle(a, b, k):
    ia, ib = _knn(a, k), _knn(b, k)
    hop = ia[ib]
    return float((hop == torch.arange(a.shape[0]).view(-1, 1, 1)).float().flatten(1).max(1).values.mean())


def _lcs(x, y):
    dp = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            dp[i][j] = dp[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(dp[i - 1][j], dp[i][j - 1])
    return dp[-1][-1]


def _lev(x, y):
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] != y[j - 1]))
        prev = cur
    return prev[-1]


def _lcs_knn(a, b, k):
    ia, ib = _knn(a, k).numpy(), _knn(b, k).numpy()
    return sum(_lcs(x, y) for x, y in zip(ia, ib)) / len(ia)


def _edit_knn(a, b, k):
    ia, ib = _knn(a, k).numpy(), _knn(b, k).numpy()
    return 1 - sum(_lev(x, y) for x, y in zip(ia, ib)) / len(ia) / k


def _hsic_b(K, L):
    H = torch.eye(K.shape[0]) - 1 / K.shape[0]
    return torch.trace(K @ H @ L @ H)


def _hsic_u(K, L):
    m = K.shape[0]
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    v = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)
    return v / (m * (m - 3))


def _cka(a, b, unbiased):
    K, L = a @ a.T, b @ b.T
    h = _hsic_u if unbiased else _hsic_b
    return float(h(K, L) / (torch.sqrt(h(K, K) * h(L, L)) + 1e-6))


def _cknna(a, b, k):
    n = a.shape[0]
    K, L = a @ a.T, b @ b.T

    def sim(X, Y):
        ix = torch.topk(X.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
        iy = torch.topk(Y.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
        m = torch.zeros(n, n).scatter_(1, ix, 1) * torch.zeros(n, n).scatter_(1, iy, 1)
        return _hsic_u(m * X, m * Y)

    return float(sim(K, L)) / float(torch.sqrt(sim(K, K) * sim(L, L)) + 1e-6)


BASELINE = {"mutual_knn": _mutual, "cycle_knn": _cycle, "lcs_knn": _lcs_knn, "edit_distance_knn": _edit_knn,
            "cka": lambda a, b, k: _cka(a, b, False), "unbiased_cka": lambda a, b, k: _cka(a, b, True),
            "cknna": _cknna}


def _baseline_pair(metric, xa, xb, i, j, k):
    a = F.normalize(xa[:, i], p=2, dim=-1)
    b = F.normalize(xb[:, j], p=2, dim=-1)
    return BASELINE[metric](a, b, k)


# ------------------------------------------------------------------ run
def _data(n, layers, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 32, generator=g)
    share = torch.linspace(0.1, 0.9, layers)

    def stack():
        out = []
        for s in share:
            mix = s.sqrt() * z @ torch.randn(32, dim, generator=g) + (1 - s).sqrt() * torch.randn(n, dim, generator=g)
            out.append(torch.tanh(mix))
        return torch.stack(out, 1)

    return stack(), stack()


def _pairs(L: int, P: int) -> list[tuple[int, int]]:
    return [(i, (i * 5 + 3) % L) for i in range(0, L, max(1, L // P))][:P]


ALL = "all seven"


def worker(spec: dict) -> dict:
    """Every metric of one method (and, for vtalign, all seven sharing the kNN lists)."""
    cfg = SIZES[spec["size"]]
    n, L, D, k, P = cfg["n"], cfg["layers"], cfg["dim"], cfg["k"], cfg["pairs"]
    xa, xb = _data(n, L, D)
    pairs = _pairs(L, P)
    scale = L * L / len(pairs)
    cases, scores = {}, {}
    if spec["impl"] == "vtalign":
        layerwise_alignment(xa[:64, :2], xb[:64, :2], k=k)  # imports, thread pools
        for m in METRICS:
            kept = []
            cases[m] = time_calls(lambda kept=kept, m=m: kept.append(layerwise_alignment(xa, xb, metric=m, k=k).scores))
            scores[m] = [float(kept[-1][i, j]) for i, j in pairs]
        cases[ALL] = time_calls(lambda: layerwise_alignments(xa, xb, METRICS, k=k))
    else:
        for m in METRICS:
            kept = []
            t = time_calls(lambda kept=kept, m=m: kept.append([_baseline_pair(m, xa, xb, i, j, k) for i, j in pairs]),
                           warmup=lambda m=m: _baseline_pair(m, xa[:64], xb[:64], 0, 1, k), reps=1)
            # every pair has the same shapes: the timed subset scales to all La x Lb pairs
            cases[m] = {**t, "seconds": t["seconds"] * scale, "cpu_s": t["cpu_s"] * scale}
            scores[m] = kept[-1]
        cases[ALL] = dict(seconds=sum(cases[m]["seconds"] for m in METRICS),
                          cpu_s=sum(cases[m]["cpu_s"] for m in METRICS), reps=1, peak_mib=None)
    # the shortest case decides how many rounds `compare` runs
    return dict(cases=cases, scores=scores, seconds=min(c["seconds"] for c in cases.values()))


def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    n, L, D, k, P = cfg["n"], cfg["layers"], cfg["dim"], cfg["k"], cfg["pairs"]
    base_label = "per-pair loop (platonic-rep)"
    res = compare(__name__, {"vtalign": dict(impl="vtalign", size=size),
                             base_label: dict(impl="platonic", size=size)}, progress=progress)
    for label, r in res.items():
        if r["error"]:
            raise RuntimeError(f"metrics worker {label} {r['error']}")
    threads = res["vtalign"]["runs"][0]["threads"]
    lines = [f"N = {n}, {L} x {L} layer pairs, D = {D}, k = {k}, float32 features, CPU.",
             f"Baseline: platonic-rep's per-pair loop, timed on {len(_pairs(L, P))} pairs and scaled by "
             f"{L * L}/{len(_pairs(L, P))} (every pair has the same shapes). vtalign: all pairs, timed.",
             f"Threads: {threads}.", "",
             "| metric | platonic-rep s, median (min–max) | vtalign s, median (min–max) | rounds | "
             "speed-up, median (min–max) | CPU-time ratio | max abs score diff |",
             "|---|---|---|---|---|---|---|"]
    for m in [*METRICS, ALL]:
        per = {label: {"runs": [{**run_["cases"][m], "threads": run_["threads"]} for run_ in r["runs"]],
                       "error": None} for label, r in res.items()}
        case = f"{m} {L}x{L}, N={n}, D={D}"
        st = record_compared("metrics", case, per)
        v, b = st["vtalign"], st[base_label]
        rs = ratio_stats(b["times"], v["times"])
        cpu = (statistics.median(x["cpu_s"] for x in per[base_label]["runs"])
               / statistics.median(x["cpu_s"] for x in per["vtalign"]["runs"]))
        if m == ALL:
            diff = ""
        else:
            ours, theirs = res["vtalign"]["runs"][0]["scores"][m], res[base_label]["runs"][0]["scores"][m]
            diff = f"{max(abs(a - c) for a, c in zip(ours, theirs)):.1e}"
        lines.append(f"| {m} | {b['seconds']:.3g} ({b['seconds_min']:.3g}–{b['seconds_max']:.3g}) | "
                     f"{v['seconds']:.3g} ({v['seconds_min']:.3g}–{v['seconds_max']:.3g}) | {v['rounds']} | "
                     f"**{rs['median']:.1f}x** ({rs['min']:.1f}–{rs['max']:.1f}) | {cpu:.1f}x | {diff} |")
    return "\n".join(lines)


if __name__ == "__main__":
    worker_main(worker)
