"""Many-model leaderboards: every model of A against every model of B, each
pair's best layer pair with its raw and calibrated score and p-value
(`vtalign.probe.aristotelian`), from one kNN search per (model, layer).

Every model pair uses the same permutations (drawn once from `seed`), so the
rows of the table are calibrated against the same null draws. For mutual kNN
the permutation null of every A model against one B model is one pass of
`OverlapIndex` over B's permuted lists, shared by all A models; the other
metrics compute each pair's null from the same cached lists (`null_scores`).

`leaderboard(models_a, models_b, ...)` takes layers in memory (what a sweep
calls); `leaderboard_from_lists` takes finished kNN lists;
`vtalign.probe.leaderboard_files` runs it on feature files with a cache.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from vtalign.ops.overlap_null import OverlapIndex
from vtalign.probe._checks import check_backend, check_flag, check_fraction, check_seed
from vtalign.probe.alignment import as_layer_list
from vtalign.probe.aristotelian import calibrate_scores, check_agg, check_smax, null_scores
from vtalign.probe.metrics import DEFAULT_WORKSPACE, USES_K, check_int, check_metric, layer_lists
from vtalign.probe.null_scores import draw_permutations

Layers = Sequence[torch.Tensor]


@dataclass
class PairResult:
    """One (model of A, model of B): best layer pair `best`, its score `raw`, and the
    calibrated aggregate (NaN without permutations)."""
    model_a: str
    model_b: str
    best: tuple[int, int]
    raw: float
    statistic: float
    calibrated: float
    p_value: float
    tau: float
    scores: torch.Tensor | None = field(default=None, repr=False, compare=False)  # `[La, Lb]`, when kept

    def to_dict(self) -> dict:
        return dict(model_a=self.model_a, model_b=self.model_b, best=list(self.best), raw=self.raw,
                    statistic=self.statistic, calibrated=self.calibrated, p_value=self.p_value, tau=self.tau)

    @classmethod
    def from_dict(cls, d: dict) -> PairResult:
        """The inverse of `to_dict` (JSON's null read back as NaN)."""
        nan = math.nan
        return cls(d["model_a"], d["model_b"], tuple(d["best"]), d["raw"], d["statistic"],
                   *(nan if d[f] is None else d[f] for f in ("calibrated", "p_value", "tau")))


@dataclass
class Leaderboard:
    """All pairs of a leaderboard with the options that produced them."""
    metric: str
    k: int
    n: int
    agg: str
    alpha: float
    smax: float | None
    n_permutations: int
    seed: int
    models_a: list[str]
    models_b: list[str]
    pairs: dict[tuple[str, str], PairResult] = field(default_factory=dict)

    def matrix(self, what: str = "calibrated") -> torch.Tensor:
        """`[Ma, Mb]` float64 of one field of every pair (NaN where a pair is missing)."""
        out = torch.full((len(self.models_a), len(self.models_b)), math.nan, dtype=torch.float64)
        for i, a in enumerate(self.models_a):
            for j, b in enumerate(self.models_b):
                if (a, b) in self.pairs:
                    out[i, j] = getattr(self.pairs[(a, b)], what)
        return out

    def ranked(self) -> list[PairResult]:
        """Pairs best first: calibrated score, then raw score, then names (a stable order)."""
        def key(r: PairResult):
            cal = -math.inf if math.isnan(r.calibrated) else r.calibrated
            return (-cal, -r.raw, r.model_a, r.model_b)
        return sorted(self.pairs.values(), key=key)

    def markdown(self) -> str:
        head = (f"# vtalign leaderboard: {self.metric} (k={self.k}, N={self.n}), {len(self.models_a)} x "
                f"{len(self.models_b)} models\n\ncalibrated = clamp((T - τ) / (s_max - τ), 0, 1) with T the {self.agg} "
                f"over layer pairs, τ its {1 - self.alpha:g} critical value under {self.n_permutations} "
                f"permutations (seed {self.seed}), s_max = {self.smax}\n")
        return head + "\n" + "\n".join(self.table()) + "\n"

    def table(self, label_a: str = "model A", label_b: str = "model B", short: str = "A, B") -> list[str]:
        """The ranked pairs as markdown table lines."""
        rows = [f"| rank | {label_a} | {label_b} | best layers ({short}) | raw | calibrated | p | τ |",
                "|---:|---|---|---|---:|---:|---:|---:|"]
        for r, p in enumerate(self.ranked(), 1):
            rows.append(f"| {r} | {p.model_a} | {p.model_b} | ({p.best[0]}, {p.best[1]}) | {p.raw:.4f} | "
                        f"{p.calibrated:.4f} | {p.p_value:.3g} | {p.tau:.4f} |")
        return rows

    def to_dict(self) -> dict:
        return dict(metric=self.metric, k=self.k, n=self.n, agg=self.agg, alpha=self.alpha, smax=self.smax,
                    permutations=self.n_permutations, seed=self.seed, models_a=self.models_a,
                    models_b=self.models_b, pairs=[p.to_dict() for p in self.ranked()])


def pair_result(name_a: str, name_b: str, obs: torch.Tensor, null: torch.Tensor | None, *, metric, agg, alpha,
                smax, keep_scores: bool = False) -> PairResult:
    """One pair from its observed `[La, Lb]` scores and its null `[P, La, Lb]` (None: raw only)."""
    flat = int(torch.argmax(obs))
    best = (flat // obs.shape[1], flat % obs.shape[1])
    kept = obs if keep_scores else None
    if null is None:  # no permutations: raw scores only
        stat = float(obs.max()) if agg == "max" else float(obs.mean()) if agg == "mean" else float(agg(obs))
        return PairResult(name_a, name_b, best, float(obs[best]), stat, math.nan, math.nan, math.nan, kept)
    c = calibrate_scores(obs, null, metric=metric, agg=agg, alpha=alpha, smax=smax)
    return PairResult(name_a, name_b, best, float(obs[best]), c.statistic, c.calibrated, c.p_value, c.tau, kept)


def check_leaderboard_options(metric, k, n_permutations, alpha, smax, agg, seed) -> float | None:
    """Every option checked before any work; returns s_max resolved ("auto": 1, k for lcs_knn)."""
    check_metric(metric)
    if metric in USES_K:
        check_int("k", k, lo=2 if metric == "cknna" else 1)
    check_int("n_permutations", n_permutations, lo=0)
    check_fraction("alpha", alpha)
    check_agg(agg)
    check_seed(seed)
    if isinstance(smax, str):
        if smax != "auto":
            raise ValueError(f"smax must be a positive number, None or 'auto', got {smax!r}")
        return float(k) if metric == "lcs_knn" else 1.0
    return check_smax(smax)


def _names(models: Mapping, side: str) -> list[str]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models_{side} must be a non-empty mapping name -> model, got {type(models).__name__}")
    return [str(m) for m in models]


def leaderboard_from_lists(lists_a: Mapping[str, torch.Tensor] | None, lists_b: Mapping[str, torch.Tensor] | None,
                           metric: str = "mutual_knn", *, n_permutations: int = 200, alpha: float = 0.05,
                           smax: float | None | str = "auto", agg="max", seed: int = 0,
                           layers_a: Mapping[str, Layers] | None = None, layers_b: Mapping[str, Layers] | None = None,
                           normalize: bool = True, backend: str = "auto", done: Leaderboard | None = None,
                           on_model_b: Callable[[Leaderboard], None] | None = None, n: int | None = None,
                           k: int | None = None, max_workspace_bytes: int = DEFAULT_WORKSPACE,
                           keep_scores: bool = False) -> Leaderboard:
    """Leaderboard from kNN lists `{name: [L, N, k]}` per side (same N and k everywhere).

    Gram metrics (cka, unbiased_cka, cknna) also need `layers_a` / `layers_b`
    `{name: [N, D_l] tensors}`; cka and unbiased_cka need no lists (pass None and
    `n`). `done` is an earlier, interrupted run with the same options: its pairs
    are kept, only the missing ones computed. `on_model_b(board)` runs after each
    model of B (a checkpoint for resuming). `keep_scores`: every new pair keeps its
    `[La, Lb]` scores in `PairResult.scores`."""
    if lists_a is None or lists_b is None:
        if metric in USES_K or layers_a is None or layers_b is None or n is None:
            raise ValueError(f"{metric} without kNN lists needs a Gram metric, layers_a, layers_b and n")
        names_a, names_b = _names(layers_a, "a"), _names(layers_b, "b")
        lists_a = lists_b = None
        k = 0 if k is None else k
    else:
        names_a, names_b = _names(lists_a, "a"), _names(lists_b, "b")
        some = next(iter(lists_a.values()))
        n, k = int(some.shape[1]), int(some.shape[2])
        for side, lists in (("a", lists_a), ("b", lists_b)):
            for name, t in lists.items():
                if not isinstance(t, torch.Tensor) or t.dim() != 3 or tuple(t.shape[1:]) != (n, k):
                    raise ValueError(f"lists_{side}[{name!r}] must be [L, N={n}, k={k}], got "
                                     f"{getattr(t, 'shape', type(t).__name__)}")
    smax = check_leaderboard_options(metric, k, n_permutations, alpha, smax, agg, seed)
    if metric in ("cka", "unbiased_cka", "cknna") and (layers_a is None or layers_b is None):
        raise ValueError(f"{metric} needs the features: pass layers_a and layers_b")
    check_flag("normalize", normalize)
    check_flag("keep_scores", keep_scores)
    check_backend(backend)
    board = Leaderboard(metric, k, n, agg if isinstance(agg, str) else getattr(agg, "__name__", "callable"),
                        float(alpha), smax, n_permutations, seed, names_a, names_b)
    if done is not None:
        board.pairs.update({key: p for key, p in done.pairs.items() if key[0] in names_a and key[1] in names_b})
    _fill(board, lists_a, lists_b, layers_a, layers_b, agg=agg, normalize=normalize, backend=backend,
          on_model_b=on_model_b, max_workspace_bytes=max_workspace_bytes, keep_scores=keep_scores)
    return board


def _fill(board: Leaderboard, lists_a, lists_b, layers_a, layers_b, *, agg, normalize, backend, on_model_b,
          max_workspace_bytes, keep_scores: bool = False) -> None:
    """Compute every missing pair of `board`, one model of B at a time (lists may be None for cka)."""
    n, k, metric, n_perm = board.n, board.k, board.metric, board.n_permutations
    perms = draw_permutations(n, n_perm, generator=torch.Generator().manual_seed(board.seed))
    ident = torch.arange(n).unsqueeze(0)
    kw = dict(metric=metric, agg=agg, alpha=board.alpha, smax=board.smax, keep_scores=keep_scores)
    index, indexed = None, None  # built once for the A models a B model still needs (the same for all, usually)
    for b in board.models_b:
        todo = [a for a in board.models_a if (a, b) not in board.pairs]
        if not todo:
            continue
        if metric == "mutual_knn":
            # one pass per permutation for every A model at once; row 0 is the identity
            if indexed != todo:
                index, indexed = OverlapIndex([lists_a[a] for a in todo]), todo
            per_a = index.split(index.counts(lists_b[b], torch.cat([ident, perms])))
            for a, s in zip(todo, per_a):
                board.pairs[(a, b)] = pair_result(a, b, s[0], s[1:] if n_perm else None, **kw)
        else:
            for a in todo:
                la = None if layers_a is None else layers_a[a]
                lb = None if layers_b is None else layers_b[b]
                lists = None if lists_a is None else (lists_a[a], lists_b[b])
                obs, null = null_scores(metric, la, lb, perms, k=k, lists=lists, normalize=normalize,
                                        backend=backend, max_workspace_bytes=max_workspace_bytes)
                board.pairs[(a, b)] = pair_result(a, b, obs, null if n_perm else None, **kw)
        if on_model_b is not None:
            on_model_b(board)


def leaderboard(models_a: Mapping[str, Layers], models_b: Mapping[str, Layers], metric: str = "mutual_knn",
                k: int = 10, *, n_permutations: int = 200, alpha: float = 0.05, smax: float | None | str = "auto",
                agg="max", seed: int = 0, normalize: bool = True, backend: str = "auto",
                max_workspace_bytes: int = DEFAULT_WORKSPACE) -> Leaderboard:
    """Every model of A against every model of B, layers in memory.

    Args:
        models_a, models_b: `{name: layers}`, each a list of `[N, D_l]` tensors or an
            `[N, L, D]` tensor (all with the same N).
        metric: one of `METRICS`; k: neighbours (kNN metrics, CKNNA).
        n_permutations: K of the null (0: raw scores only); alpha, smax, agg, seed:
            as in `vtalign.probe.aristotelian.calibrated_alignment`.

    Returns:
        A `Leaderboard`; `.markdown()`, `.to_dict()`, `.matrix("calibrated")` `[Ma, Mb]`.
    """
    names_a, names_b = _names(models_a, "a"), _names(models_b, "b")
    smax = check_leaderboard_options(metric, k, n_permutations, alpha, smax, agg, seed)
    check_flag("normalize", normalize)
    check_backend(backend)
    # each model as a checked layer list ([N, L, D], [N, D] or a list of [N, D_l]), all with one N
    models_a = {m: as_layer_list(f"models_a[{m!r}]", models_a[m]) for m in names_a}
    models_b = {m: as_layer_list(f"models_b[{m!r}]", models_b[m]) for m in names_b}
    n = int(models_a[names_a[0]][0].shape[0])
    for side, models in (("a", models_a), ("b", models_b)):
        for name, layers in models.items():
            if layers[0].shape[0] != n:
                raise ValueError(f"models_{side}[{name!r}] has N={layers[0].shape[0]} samples, "
                                 f"models_a[{names_a[0]!r}] has N={n}")
    if metric in USES_K:
        check_int("k", k, lo=2 if metric == "cknna" else 1, hi=n - 1)
    board = Leaderboard(metric, k if metric in USES_K else 0, n,
                        agg if isinstance(agg, str) else getattr(agg, "__name__", "callable"), float(alpha), smax,
                        n_permutations, seed, names_a, names_b)
    lists_a = lists_b = None
    if metric in USES_K:  # one search per (model, layer); the Gram metrics need none
        kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
        lists_a = {a: layer_lists(models_a[a], k, **kw) for a in names_a}
        lists_b = {b: layer_lists(models_b[b], k, **kw) for b in names_b}
    _fill(board, lists_a, lists_b, models_a, models_b, agg=agg, normalize=normalize, backend=backend,
          on_model_b=None, max_workspace_bytes=max_workspace_bytes)
    return board


__all__ = ["Leaderboard", "PairResult", "check_leaderboard_options", "leaderboard", "leaderboard_from_lists",
           "pair_result"]
