"""Frames x captions sweeps from feature files, and the memory of `vtalign extract`
(`vtalign bench --suites sweep`).

Sweep: the Dynamic Reflections grid (full: 8 frame counts x 10 caption counts, a
13-layer D = 768 video model against a 42-layer D = 3584 text model, N = 1024,
k = 10), synthetic `tanh` features of a shared latent saved as one `.pt` file per
count, named as `vtalign extract` names them. vtalign's `sweep_files` searches each
file's layers once (F·Lv + C·Lt = 524 searches) and scores the 80 cells from the
lists (raw scores: `permutations=0`, what the loop computes); the baseline is the
per-cell loop (`layerwise_alignment` once per cell, as `scaling_sweep` ran before it
reused lists: F·C·(Lv + Lt) = 4400 searches). Every
cell has the same shapes, so the loop is timed on a few cells and scaled to all of
them; both sides' scores are compared on those cells. vtalign's time includes
reading every file from disk (memory-mapped); the loop's features of the timed
cells are in memory before its timer starts. No kNN cache: every search runs.

Extract: peak memory of assembling N = 10,000 samples into one `[N, 13, 768]`
file. The encoder is a cheap stand-in (seeded random features per batch: the
model's own memory is not what is measured); vtalign persists each batch and
streams the parts into the file, against the usual accumulate-then-`torch.cat`-
then-`torch.save`.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import torch

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

# models: a many-model sweep (Mv video x Mt text models on an F x C grid, K permutations per cell)
SIZES = {
    "small": dict(n=128, frames=[1, 2, 4], captions=[1, 2, 3], lv=3, lt=5, dv=32, dt=48, k=10, cells=2,
                  extract_n=2000, extract_layers=4, extract_dim=64, batch=64,
                  models=dict(mv=2, mt=2, frames=[1, 2], captions=[1, 2], lv=2, dv=24, lt=3, dt=32, perms=10)),
    "full": dict(n=1024, frames=[1, 2, 4, 8, 16, 32, 64, 128], captions=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                 lv=13, lt=42, dv=768, dt=3584, k=10, cells=2, extract_n=10_000, extract_layers=13,
                 extract_dim=768, batch=64,
                 models=dict(mv=4, mt=3, frames=[1, 2, 4, 8], captions=[1, 2, 3, 4], lv=13, dv=768, lt=25, dt=1024,
                             perms=200)),
}
LOOP = "per-cell loop"
NAIVE = "cat + torch.save"
PAIRS = "per-model-pair sweeps"
SEARCHES = "kNN searches alone"


# ------------------------------------------------------------------- inputs
def _stack(z: torch.Tensor, layers: int, dim: int, signal: float, g: torch.Generator) -> torch.Tensor:
    """`[N, layers, dim]` tanh features; the shared latent's weight grows with depth and `signal`."""
    n = z.shape[0]
    out = torch.empty(n, layers, dim)
    for l in range(layers):
        s = signal * (0.3 + 0.7 * l / max(1, layers - 1))
        out[:, l] = torch.tanh(s ** 0.5 * z @ torch.randn(z.shape[1], dim, generator=g)
                               + (1 - s) ** 0.5 * torch.randn(n, dim, generator=g))
    return out


def write_inputs(cfg: dict, folder: str) -> tuple[list[str], list[str]]:
    """One `.pt` file per frame count and per caption count (the extract naming)."""
    from vtalign.probe.features import save_features

    g = torch.Generator().manual_seed(0)
    z = torch.randn(cfg["n"], 32, generator=g)
    video, text = [], []
    for axis, counts, layers, dim, out in (("frames", cfg["frames"], cfg["lv"], cfg["dv"], video),
                                           ("captions", cfg["captions"], cfg["lt"], cfg["dt"], text)):
        for c in counts:
            signal = 0.8 * (1 - 0.6 / c ** 0.5)  # more frames / captions: more of the shared latent
            path = os.path.join(folder, f"synth{'video' if axis == 'frames' else 'text'}_pool-avg_num{axis}-{c}.pt")
            save_features(path, _stack(z, layers, dim, signal, g))
            out.append(path)
    return video, text


def write_model_inputs(cfg: dict, folder: str) -> tuple[str, str]:
    """The many-model sweep's files: `folder/video` and `folder/text`, one file per (model, count)."""
    from vtalign.probe.features import save_features

    m = cfg["models"]
    g = torch.Generator().manual_seed(1)
    z = torch.randn(cfg["n"], 32, generator=g)
    dirs = (os.path.join(folder, "video"), os.path.join(folder, "text"))
    for d, axis, count, counts, layers, dim, tag in ((dirs[0], "frames", m["mv"], m["frames"], m["lv"], m["dv"], "v"),
                                                     (dirs[1], "captions", m["mt"], m["captions"], m["lt"], m["dt"],
                                                      "t")):
        os.makedirs(d)
        for i in range(count):
            for c in counts:
                signal = (0.5 + 0.1 * i) * (1 - 0.6 / c ** 0.5)
                save_features(os.path.join(d, f"{tag}model{i}_pool-avg_num{axis}-{c}.pt"),
                              _stack(z, layers, dim, signal, g))
    return dirs


def _timed_cells(cfg: dict) -> list[tuple[int, int]]:
    """The loop's timed cells: the grid's corners first (shapes are equal in every cell)."""
    f, c = cfg["frames"], cfg["captions"]
    return [(f[0], c[0]), (f[-1], c[-1]), (f[0], c[-1]), (f[-1], c[0])][:cfg["cells"]]


# ------------------------------------------------------------------ workers
def _sweep_worker(spec: dict, cfg: dict) -> dict:
    from vtalign.probe.alignment import layerwise_alignment
    from vtalign.probe.features import load_features

    vfiles, tfiles = spec["video"], spec["text"]
    k = cfg["k"]
    warm = torch.randn(64, 2, 16)
    warmup = lambda: layerwise_alignment(warm, warm, k=5)  # noqa: E731  imports, thread pools
    reps = spec.get("reps", None if spec["size"] == "small" else 0)  # the tests time a single call
    kept = []
    if spec["impl"] == "vtalign":
        from vtalign.probe.file_sweep import sweep_files

        # raw scores, as the loop computes them (the calibrated cells, `vtalign sweep`'s default,
        # have no counterpart in the loop; the many-model case below times them)
        out = time_calls(lambda: kept.append(sweep_files(vfiles, tfiles, k=k, progress=False, permutations=0)),
                         warmup=warmup, reps=reps)
        sw = kept[-1].sweep
        cell = {(int(f), int(c)): s for f, c, s in zip(sw.n_frames, sw.n_captions, sw.scores.tolist())}
        out["scores"] = [cell[fc] for fc in _timed_cells(cfg)]
        out["searches"] = kept[-1].searches
        return out
    by_f = dict(zip(cfg["frames"], vfiles))
    by_c = dict(zip(cfg["captions"], tfiles))
    cells = _timed_cells(cfg)
    feats = {fc: (load_features(by_f[fc[0]]), load_features(by_c[fc[1]])) for fc in cells}
    out = time_calls(lambda: kept.append([layerwise_alignment(*feats[fc], k=k).best_score for fc in cells]),
                     warmup=warmup, reps=reps)
    scale = len(cfg["frames"]) * len(cfg["captions"]) / len(cells)
    out.update(seconds=out["seconds"] * scale, cpu_s=out["cpu_s"] * scale, scores=kept[-1])
    return out


def _extract_worker(spec: dict, cfg: dict) -> dict:
    from vtalign._atomic import atomic_write
    from vtalign.probe.extract_loop import run_extraction
    from vtalign.probe.manifest import Sample

    n, layers, dim, bs = cfg["extract_n"], cfg["extract_layers"], cfg["extract_dim"], cfg["batch"]

    def encoder(batch):  # the stand-in: seeded features, deterministic per batch
        g = torch.Generator().manual_seed(int(batch[0].id))
        return {1: torch.randn(len(batch), layers, dim, generator=g)}

    def call(folder: str, count: int) -> None:
        samples = [Sample(str(i), None, ("x",)) for i in range(count)]
        path = os.path.join(folder, "standin_pool-avg_numframes-1.pt")
        if spec["impl"] == "vtalign":
            run_extraction(samples, [1], {1: path}, encoder, out_dir=folder, key="bench", batch_size=bs, meta={},
                           label="stand-in", progress=False)
        else:
            parts = [encoder(samples[s:s + bs])[1] for s in range(0, count, bs)]
            feats = torch.cat(parts)
            del parts
            atomic_write(path, lambda tmp: torch.save({"feats": feats, "ids": [s.id for s in samples]}, tmp))

    root = tempfile.mkdtemp(prefix="vtalign-bench-extract-", dir=spec["dir"])
    try:
        runs = iter(range(1_000_000))
        # a fresh folder per call: a finished extraction is not redone, by design
        out = time_calls(lambda: call(os.path.join(root, f"r{next(runs)}"), n),
                         warmup=lambda: call(os.path.join(root, "warm"), 2 * bs), reps=0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _models_worker(spec: dict, cfg: dict) -> dict:
    from vtalign.probe.alignment import layerwise_alignment
    from vtalign.probe.features import open_features
    from vtalign.probe.file_sweep import axis_models, sweep_files
    from vtalign.probe.run import cached_layer_lists

    m, k = cfg["models"], cfg["k"]
    vdir, tdir = spec["video"], spec["text"]
    warm = torch.randn(64, 2, 16)
    warmup = lambda: layerwise_alignment(warm, warm, k=5)  # noqa: E731  imports, thread pools
    reps = spec.get("reps", None if spec["size"] == "small" else 0)
    kept = []
    if spec["impl"] == "vtalign":
        out = time_calls(lambda: kept.append(sweep_files([vdir], [tdir], k=k, permutations=m["perms"],
                                                         progress=False)), warmup=warmup, reps=reps)
        pair = kept[-1].pairs[("vmodel0", "tmodel0")]
        out.update(searches=kept[-1].searches, calibrated=pair.calibrated.tolist(), scores=pair.sweep.scores.tolist())
        return out
    vm, tm = axis_models([vdir], "frames", "video"), axis_models([tdir], "captions", "text")
    if spec["impl"] == SEARCHES:
        def searches():
            for files in (*vm.values(), *tm.values()):
                for path in files.values():
                    with open_features(path) as ff:
                        cached_layer_lists(ff, "", k, normalize=True, options="", cache_dir=None)
        return time_calls(searches, warmup=warmup, reps=reps)
    # every pair has the same shapes: one pair's sweep, scaled to all of them
    out = time_calls(lambda: kept.append(sweep_files(list(vm["vmodel0"].values()), list(tm["tmodel0"].values()),
                                                     k=k, permutations=m["perms"], progress=False)),
                     warmup=warmup, reps=reps)
    scale = m["mv"] * m["mt"]
    pair = kept[-1].only_pair()
    out.update(seconds=out["seconds"] * scale, cpu_s=out["cpu_s"] * scale, calibrated=pair.calibrated.tolist(),
               scores=pair.sweep.scores.tolist())
    return out


def worker(spec: dict) -> dict:
    cfg = SIZES[spec["size"]]
    if spec["case"] == "models":
        return _models_worker(spec, cfg)
    return _sweep_worker(spec, cfg) if spec["case"] == "sweep" else _extract_worker(spec, cfg)


# ------------------------------------------------------------------- report
def _row(label: str, s: dict, base: dict | None) -> str:
    r = ratio_stats(s["times"], base["times"]) if base is not None and s is not base else None
    ratio = f"**{r['median']:.1f}x** ({r['min']:.1f}–{r['max']:.1f})" if r else "1"
    peak = "" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
    return (f"| {label} | {s['seconds']:.3g} ({s['seconds_min']:.3g}–{s['seconds_max']:.3g}) | {s['rounds']} | "
            f"{peak} | {ratio} |")


HEAD = ["| implementation | seconds, median (min–max) | rounds | peak extra MiB | time / vtalign's, median "
        "(min–max) |", "|---|---|---|---|---|"]


def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    F, C, lv, lt = len(cfg["frames"]), len(cfg["captions"]), cfg["lv"], cfg["lt"]
    lines = []
    with tempfile.TemporaryDirectory(prefix="vtalign-bench-sweep-") as tmp:
        video, text = write_inputs(cfg, tmp)
        common = dict(case="sweep", size=size, video=video, text=text)
        res = compare(__name__, {"vtalign": dict(impl="vtalign", **common), LOOP: dict(impl="loop", **common)},
                      progress=progress)
        case = f"sweep {F}x{C} cells, {lv}+{lt} layers, N={cfg['n']}, D={cfg['dv']}/{cfg['dt']}"
        st = record_compared("sweep", case, res)
        lines += [f"## Sweep: {F} x {C} cells, {lv} video layers (D = {cfg['dv']}) x {lt} text layers "
                  f"(D = {cfg['dt']}), N = {cfg['n']}, k = {cfg['k']}", "", *HEAD]
        lines += [_row(label, s, st.get("vtalign")) for label, s in st.items()]
        lines += [f"| {label} | failed: {r['error']} | | | |" for label, r in res.items() if r["error"]]
        lines += ["", f"vtalign: {F}·{lv} + {C}·{lt} = {F * lv + C * lt} kNN searches for the grid; the loop: "
                  f"{F * C * (lv + lt)} ({F}·{C} cells x {lv + lt}), timed on {cfg['cells']} cells and scaled by "
                  f"{F * C}/{cfg['cells']}. vtalign reads every file from disk inside its timer; the loop's "
                  "features are in memory before its timer starts."]
        if not any(r["error"] for r in res.values()):
            a, b = res["vtalign"]["runs"][0]["scores"], res[LOOP]["runs"][0]["scores"]
            diff = max(abs(x - y) for x, y in zip(a, b))
            lines.append(f"Best-pair scores on the timed cells: max abs difference {diff:.1e}.")
        lines += ["", *_models_section(cfg, tmp, size, progress)]
        common = dict(case="extract", size=size, dir=tmp)
        res = compare(__name__, {"vtalign": dict(impl="vtalign", **common), NAIVE: dict(impl="naive", **common)},
                      progress=progress)
        n, el, ed = cfg["extract_n"], cfg["extract_layers"], cfg["extract_dim"]
        st = record_compared("sweep", f"extract N={n}, [{el}, {ed}] per sample", res)
        lines += ["", f"## Extract: peak memory of N = {n:,} samples into one [N, {el}, {ed}] file "
                  f"({n * el * ed * 4 / 2**20:.0f} MiB), batches of {cfg['batch']}", "", *HEAD]
        lines += [_row(label, s, st.get("vtalign")) for label, s in st.items()]
        lines += [f"| {label} | failed: {r['error']} | | | |" for label, r in res.items() if r["error"]]
        lines += ["", "The encoder is a stand-in (seeded random features per batch), so the peak is the "
                  "extraction's own: vtalign saves each batch and streams the parts into the file (one batch in "
                  "memory); the peer holds every batch, concatenates them and saves the whole tensor."]
    return "\n".join(lines) + "\n"


def _models_section(cfg: dict, tmp: str, size: str, progress) -> list[str]:
    m = cfg["models"]
    vdir, tdir = write_model_inputs(cfg, os.path.join(tmp, "models"))
    common = dict(case="models", size=size, video=vdir, text=tdir)
    res = compare(__name__, {"vtalign": dict(impl="vtalign", **common), PAIRS: dict(impl=PAIRS, **common),
                             SEARCHES: dict(impl=SEARCHES, **common)}, progress=progress)
    F, C = len(m["frames"]), len(m["captions"])
    case = (f"sweep of {m['mv']}x{m['mt']} models, {F}x{C} cells, {m['lv']}+{m['lt']} layers, N={cfg['n']}, "
            f"K={m['perms']}")
    st = record_compared("sweep", case, res, floors=(SEARCHES,))
    searches = F * m["mv"] * m["lv"] + C * m["mt"] * m["lt"]
    lines = [f"## Sweep of {m['mv']} video x {m['mt']} text models: {F} x {C} cells, {m['lv']} video layers "
             f"(D = {m['dv']}) and {m['lt']} text layers (D = {m['dt']}) per model, N = {cfg['n']}, k = {cfg['k']}, "
             f"{m['perms']} permutations per cell", "", *HEAD]
    lines += [_row(label, s, st.get("vtalign")) for label, s in st.items()]
    lines += [f"| {label} | failed: {r['error']} | | | |" for label, r in res.items() if r["error"]]
    lines += ["", f"vtalign: one search per (file, layer), {searches} in all, and a calibrated leaderboard per cell; "
              f"the peer runs one-pair sweeps ({PAIRS}: each pair's files searched again for every pair), timed on "
              f"one pair and scaled by {m['mv'] * m['mt']}; the floor is the {searches} searches alone."]
    if not any(r["error"] for r in res.values()):
        floor = ratio_stats(st["vtalign"]["times"], st[SEARCHES]["times"])
        lines.append(f"The many-model sweep takes **{floor['median']:.2f}x** its searches ({floor['min']:.2f}–"
                     f"{floor['max']:.2f}): the rest is the permutation null of all {F * C} cells ({C * m['mt']} "
                     f"index passes of {m['perms'] + 1} permutations, one per text file for all video files) and "
                     f"{m['mv'] * m['mt']} scaling-law fits.")
        a, b = res["vtalign"]["runs"][0], res[PAIRS]["runs"][0]
        same = a["scores"] == b["scores"] and a["calibrated"] == b["calibrated"]
        lines.append(f"Scores and calibrated scores of the first model pair, many-model sweep vs its one-pair sweep: "
                     f"{'identical' if same else 'DIFFERENT'}.")
    return lines


if __name__ == "__main__":
    worker_main(worker)
