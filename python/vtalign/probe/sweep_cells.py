"""Every cell of a sweep from the per-file kNN lists, and the cell checkpoint.

A cell (n_f, n_c) is a leaderboard of the video models with n_f frames against the
text models with n_c captions. For mutual kNN the permutation null is counted by
`OverlapIndex`, whose cost is one pass over the query lists per permutation, almost
whatever the number of indexed layers. A text file's permuted queries are the same
in every cell of its column, so the video files of several frame counts (a group of
rows, within an index budget) are indexed together and each text file makes one pass
for all of them: F·C·Mt passes become (row groups)·C·Mt. The other kNN metrics score
each cell with `leaderboard_from_lists`. Either way every pair sees the permutations
drawn once from `seed`, so a cell's scores equal `calibrated_alignment` on its files.

Finished cells are written to the checkpoint after each caption count of a row group.
"""
from __future__ import annotations

import json

import torch

from vtalign._atomic import write_json
from vtalign._progress import progress_bar
from vtalign.ops.overlap_null import OverlapIndex
from vtalign.probe.leaderboard import Leaderboard, PairResult, leaderboard_from_lists, pair_result
from vtalign.probe.null_scores import draw_permutations

INDEX_ENTRIES = 1 << 24  # (layer, row, neighbour) entries per index: about 200 MiB with its keys
Cell = tuple[int, int]


def load_checkpoint(path: str | None, options: dict) -> dict[Cell, list[dict]]:
    """The finished cells of an earlier sweep checkpointed at `path` with exactly these options."""
    if path is None:
        return {}
    try:
        with open(path) as f:
            old = json.load(f)
        if old.get("options") != json.loads(json.dumps(options)):
            return {}
        return {(int(c["n_frames"]), int(c["n_captions"])): c["pairs"] for c in old["cells"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no checkpoint, or one this version cannot read: recompute


def _record(p: PairResult) -> dict:
    d = p.to_dict()
    if p.scores is not None:
        d["layer_scores"] = p.scores.tolist()
    return d


def _from_record(d: dict) -> PairResult:
    p = PairResult.from_dict(d)
    if "layer_scores" in d:
        p.scores = torch.tensor(d["layer_scores"], dtype=torch.float64)
    return p


def _row_groups(frames: list[int], vm: dict[str, dict[int, str]], layers: dict[str, int], n: int,
                k: int) -> list[list[int]]:
    """Consecutive frame counts whose video files fit one index (at least one count each)."""
    groups, size = [], 0
    for f in frames:
        entries = sum(layers[m] for m, files in vm.items() if f in files) * n * k
        if groups and size + entries <= INDEX_ENTRIES:
            groups[-1].append(f)
            size += entries
        else:
            groups.append([f])
            size = entries
    return groups


def _column(rows: list[int], c: int, boards: dict[Cell, Leaderboard], lv, lt, vm, tm, *, index, indexed, perms,
            make_board, kw: dict, lb_kw: dict) -> list[Cell]:
    """Score the cells (f, c) of `rows` not in `boards` yet; returns them."""
    todo = [f for f in rows if (f, c) not in boards]
    text = [m for m, files in tm.items() if c in files]
    for f in todo:
        boards[(f, c)] = make_board(f, c)
    if index is None:  # not mutual kNN: one leaderboard per cell
        for f in todo:
            la = {m: lv[(m, f)] for m, files in vm.items() if f in files}
            b = leaderboard_from_lists(la, {m: lt[(m, c)] for m in text}, **lb_kw)
            boards[(f, c)].pairs.update(b.pairs)
        return [(f, c) for f in todo]
    null = perms.shape[0] > 1
    for mt in text:
        for (mv, f), s in zip(indexed, index.split(index.counts(lt[(mt, c)], perms))):
            if f in todo:
                boards[(f, c)].pairs[(mv, mt)] = pair_result(mv, mt, s[0], s[1:] if null else None, **kw)
    return [(f, c) for f in todo]


def score_cells(lv: dict, lt: dict, vm: dict, tm: dict, *, metric: str, k: int, n: int, permutations: int,
                alpha: float, smax: float | None, agg: str, seed: int, backend: str, keep_scores: bool,
                checkpoint: str | None, options: dict, progress: bool) -> dict[Cell, Leaderboard]:
    """Every cell's leaderboard from the lists `lv[(video model, frames)]` / `lt[(text model,
    captions)]` `[L, N, k]`, resuming from and writing to `checkpoint` (see the module docstring)."""
    frames = sorted({c for f in vm.values() for c in f})
    captions = sorted({c for f in tm.values() for c in f})
    layers = {m: len(lv[(m, next(iter(files)))]) for m, files in vm.items()}

    def make_board(f: int, c: int) -> Leaderboard:
        return Leaderboard(metric, k, n, agg, float(alpha), smax, permutations, seed,
                           [m for m, files in vm.items() if f in files], [m for m, files in tm.items() if c in files])

    boards: dict[Cell, Leaderboard] = {}
    for cell, recs in load_checkpoint(checkpoint, options).items():
        boards[cell] = make_board(*cell)
        boards[cell].pairs.update({(p["model_a"], p["model_b"]): _from_record(p) for p in recs})
    perms = torch.cat([torch.arange(n).unsqueeze(0),
                       draw_permutations(n, permutations, generator=torch.Generator().manual_seed(seed))])
    kw = dict(metric=metric, agg=agg, alpha=alpha, smax=smax, keep_scores=keep_scores)
    lb_kw = dict(metric=metric, n_permutations=permutations, alpha=alpha, smax=smax, agg=agg, seed=seed,
                 backend=backend, keep_scores=keep_scores)
    cells = [(f, c) for f in frames for c in captions]
    with progress_bar("sweep cells", len(cells), enabled=progress, unit="cell") as bar:
        bar.update(len(boards))
        for rows in _row_groups(frames, vm, layers, n, k):
            columns = [c for c in captions if any((f, c) not in boards for f in rows)]
            if not columns:
                continue
            index, indexed = None, [(m, f) for f in rows for m, files in vm.items() if f in files]
            if metric == "mutual_knn":
                index = OverlapIndex([lv[key] for key in indexed])
            for c in columns:
                done = _column(rows, c, boards, lv, lt, vm, tm, index=index, indexed=indexed, perms=perms,
                               make_board=make_board, kw=kw, lb_kw=lb_kw)
                bar.update(len(done))
                if checkpoint is not None:
                    write_json(checkpoint, dict(options=options, cells=[
                        dict(n_frames=f, n_captions=cc, pairs=[_record(p) for p in boards[(f, cc)].pairs.values()])
                        for f, cc in cells if (f, cc) in boards]))
    return {cell: boards[cell] for cell in cells}


__all__ = ["INDEX_ENTRIES", "load_checkpoint", "score_cells"]
