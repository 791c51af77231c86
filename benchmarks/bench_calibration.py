"""Calibrated alignment (the Aristotelian permutation null): vtalign against the
calibrated-similarity package, and a many-model leaderboard against the
per-model-pair loop (`vtalign bench --suites calibration`).

Cases:
- `calibrate_layers`, K permutations, La x Lb layers, for mutual kNN and CKA:
  `vtalign.compat.calibrated_similarity.calibrate_layers` (one kNN search or
  Gram per layer, every permutation of every pair from them) against
  `calibrated_similarity.calibrate_layers` (PyPI, the paper's package) calling
  the metric once per pair and permutation. Upstream's metric is vtalign's own
  per-pair `AlignmentMetrics` (the fastest per-pair implementation of
  platonic-rep's definitions), so the speed-up is the null's alone. Upstream
  costs (K + 1) x La x Lb metric calls whatever the data, so it is timed with
  `UPSTREAM_K` permutations and scaled by (K + 1) / (UPSTREAM_K + 1); the table
  says so. Both sides run the same generator at UPSTREAM_K permutations and the
  table reports whether p and τ agree.
- leaderboard of Ma x Mb models (ViT-B-like A models: 13 layers of 768; text-like
  B models: 25 layers of 1024), mutual kNN with K permutations: `leaderboard`
  (one search per (model, layer), the null of all A models per B model in one
  pass) against the per-model-pair loop (`calibrated_alignment` per pair, its
  searches repeated for every pair; timed on `LOOP_PAIRS` pairs and scaled to
  all, every pair having the same shapes), beside the floor: the kNN searches
  alone. The target is the leaderboard within 1.2x of its searches.

Features: tanh of a shared latent plus noise, float32, CPU; every method in fresh
processes alternated over rounds (benchmarks/README.md).
"""
from __future__ import annotations

import functools

import torch

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

SIZES = {"small": dict(n=128, layers=3, dim=32, k=5, perms=20, models_a=3, models_b=2, la=3, da=32, lb=4, db=48),
         "full": dict(n=1024, layers=13, dim=768, k=10, perms=200, models_a=20, models_b=10, la=13, da=768,
                      lb=25, db=1024)}
UPSTREAM_K = 2
LOOP_PAIRS = 2
UPSTREAM = "calibrated-similarity"
LOOP = "per-model-pair loop"
SEARCHES = "kNN searches alone"


def _layers(n: int, count: int, dim: int, z: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
    share = torch.linspace(0.1, 0.9, count)
    return [torch.tanh(s.sqrt() * z @ torch.randn(z.shape[1], dim, generator=g)
                       + (1 - s).sqrt() * torch.randn(n, dim, generator=g)) for s in share]


def _pair_data(cfg: dict, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cfg["n"], 32, generator=g)
    return (_layers(cfg["n"], cfg["layers"], cfg["dim"], z, g), _layers(cfg["n"], cfg["layers"], cfg["dim"], z, g))


def _models(cfg: dict, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cfg["n"], 32, generator=g)
    a = {f"a{i:02d}": _layers(cfg["n"], cfg["la"], cfg["da"], z, g) for i in range(cfg["models_a"])}
    b = {f"b{j:02d}": _layers(cfg["n"], cfg["lb"], cfg["db"], z, g) for j in range(cfg["models_b"])}
    return a, b


def _sim(metric: str, k: int):
    from vtalign.compat.platonic import AlignmentMetrics as AM

    return functools.partial(AM.mutual_knn, topk=k) if metric == "mutual_knn" else AM.cka


def _calibrate_worker(spec: dict, cfg: dict) -> dict:
    x, y = _pair_data(cfg)
    sim, K = _sim(spec["metric"], cfg["k"]), cfg["perms"]
    if spec["impl"] == "vtalign":
        from vtalign.compat.calibrated_similarity import calibrate_layers
    else:
        from calibrated_similarity import calibrate_layers

    def call(kk, xs=x, ys=y):
        return calibrate_layers(xs, ys, sim, K=kk, generator=torch.Generator().manual_seed(0))

    small = ([t[:64] for t in x[:2]], [t[:64] for t in y[:2]])
    if spec["impl"] == "vtalign":
        t = time_calls(lambda: call(K), warmup=lambda: call(3, *small))
        check = call(UPSTREAM_K)
    else:  # (K + 1) x La x Lb metric calls, whatever the data: timed (once) at UPSTREAM_K, scaled
        kept = []
        t = time_calls(lambda: kept.append(call(UPSTREAM_K)), warmup=lambda: call(1, *small), reps=0)
        scale = (K + 1) / (UPSTREAM_K + 1)
        t = {**t, "seconds": t["seconds"] * scale, "cpu_s": t["cpu_s"] * scale}
        check = kept[-1]
    # (calibrated, p, τ) at the shared permutation count, compared in the report
    return {**t, "check": [float(v) for v in check]}


def _leaderboard_worker(spec: dict, cfg: dict) -> dict:
    from vtalign.probe.aristotelian import calibrated_alignment
    from vtalign.probe.leaderboard import leaderboard
    from vtalign.probe.metrics import layer_lists

    ma, mb = _models(cfg)
    k, K = cfg["k"], cfg["perms"]
    tiny = {"w": [t[:64] for t in next(iter(ma.values()))[:2]]}
    if spec["impl"] == SEARCHES:
        return time_calls(lambda: [layer_lists(m, k) for m in (*ma.values(), *mb.values())],
                          warmup=lambda: layer_lists(tiny["w"], k), reps=0)
    if spec["impl"] == "vtalign":
        return time_calls(lambda: leaderboard(ma, mb, "mutual_knn", k, n_permutations=K, seed=0),
                          warmup=lambda: leaderboard(tiny, tiny, "mutual_knn", k, n_permutations=3), reps=0)
    pairs = [(a, b) for a in ma for b in mb][:LOOP_PAIRS]
    t = time_calls(lambda: [calibrated_alignment(ma[a], mb[b], "mutual_knn", k, n_permutations=K, seed=0)
                            for a, b in pairs],
                   warmup=lambda: calibrated_alignment(tiny["w"], tiny["w"], "mutual_knn", k, n_permutations=3),
                   reps=0)
    scale = len(ma) * len(mb) / len(pairs)  # every pair has the same shapes
    return {**t, "seconds": t["seconds"] * scale, "cpu_s": t["cpu_s"] * scale}


def worker(spec: dict) -> dict:
    cfg = SIZES[spec["size"]]
    if spec["case"] == "leaderboard":
        return _leaderboard_worker(spec, cfg)
    return _calibrate_worker(spec, cfg)


def _row(label: str, st: dict, base: str) -> str:
    v, b = st["vtalign"], st[base]
    rs = ratio_stats(b["times"], v["times"])
    return (f"| {label} | {b['seconds']:.3g} ({b['seconds_min']:.3g}–{b['seconds_max']:.3g}) | "
            f"{v['seconds']:.3g} ({v['seconds_min']:.3g}–{v['seconds_max']:.3g}) | {v['rounds']} | "
            f"**{rs['median']:.1f}x** ({rs['min']:.1f}–{rs['max']:.1f}) |")


def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    n, L, D, k, K = cfg["n"], cfg["layers"], cfg["dim"], cfg["k"], cfg["perms"]
    lines = [f"calibrate_layers: N = {n}, {L} x {L} layers, D = {D}, K = {K} permutations, agg = max, "
             f"k = {k} (mutual kNN), float32, CPU. {UPSTREAM} is timed at K = {UPSTREAM_K} and scaled by "
             f"{K + 1}/{UPSTREAM_K + 1} ((K + 1) x {L * L} metric calls whatever the data).", "",
             f"| case | {UPSTREAM} s, median (min–max) | vtalign s, median (min–max) | rounds | speed-up |",
             "|---|---|---|---|---|"]
    agree = []
    for metric in ("mutual_knn", "cka"):
        res = compare(__name__, {"vtalign": dict(impl="vtalign", case="calibrate", metric=metric, size=size),
                                 UPSTREAM: dict(impl="upstream", case="calibrate", metric=metric, size=size)},
                      progress=progress)
        for label, r in res.items():
            if r["error"]:
                raise RuntimeError(f"calibration worker {label} ({metric}) {r['error']}")
        st = record_compared("calibration", f"calibrate_layers {metric} {L}x{L}, N={n}, D={D}, K={K}", res)
        lines.append(_row(f"calibrate_layers {metric}", st, UPSTREAM))
        ours, theirs = res["vtalign"]["runs"][0]["check"], res[UPSTREAM]["runs"][0]["check"]
        agree.append(f"{metric}: at K = {UPSTREAM_K}, p {'equal' if ours[1] == theirs[1] else 'DIFFERENT'}, "
                     f"|Δτ| = {abs(ours[2] - theirs[2]):.1e}, |Δ calibrated| = {abs(ours[0] - theirs[0]):.1e}")
    lines += ["", "Same generator, same permutations: " + "; ".join(agree) + ".", ""]
    ma, mb = cfg["models_a"], cfg["models_b"]
    res = compare(__name__, {"vtalign": dict(impl="vtalign", case="leaderboard", size=size),
                             SEARCHES: dict(impl=SEARCHES, case="leaderboard", size=size),
                             LOOP: dict(impl=LOOP, case="leaderboard", size=size)}, progress=progress)
    for label, r in res.items():
        if r["error"]:
            raise RuntimeError(f"leaderboard worker {label} {r['error']}")
    st = record_compared("calibration", f"leaderboard {ma}x{mb} models, N={n}, K={K}", res, floors=(SEARCHES,))
    lines += [f"Leaderboard: {ma} x {mb} models (A: {cfg['la']} layers of {cfg['da']}, B: {cfg['lb']} layers of "
              f"{cfg['db']}), N = {n}, mutual kNN, k = {k}, K = {K}. The loop is timed on {LOOP_PAIRS} pairs and "
              f"scaled by {ma * mb}/{LOOP_PAIRS} (every pair has the same shapes).", "",
              f"| case | {LOOP} s, median (min–max) | vtalign s, median (min–max) | rounds | speed-up |",
              "|---|---|---|---|---|", _row("leaderboard", st, LOOP), ""]
    floor = ratio_stats(st["vtalign"]["times"], st[SEARCHES]["times"])
    searches = ma * cfg["la"] + mb * cfg["lb"]
    lines.append(f"Floor: the {searches} kNN searches alone take {st[SEARCHES]['seconds']:.3g} s; "
                 f"the leaderboard takes **{floor['median']:.2f}x** that ({floor['min']:.2f}–{floor['max']:.2f}; "
                 f"target <= 1.2x).")
    return "\n".join(lines)


if __name__ == "__main__":
    worker_main(worker)
