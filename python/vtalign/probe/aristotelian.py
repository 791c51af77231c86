"""Null-calibrated alignment scores for every metric (Gröger, Wen & Brbić,
"Revisiting the Platonic Representation Hypothesis: An Aristotelian View",
ICML 2026; reference implementation: PyPI `calibrated-similarity`).

For a score matrix S `[La, Lb]` and an aggregate T = agg(S) (max or mean over
all layer pairs, or any callable), K permutations π_1..π_K of B's samples --
the same π for every layer of B -- give the null aggregates T_k = agg(S(A, B[π_k])).
With T_obs = agg(S(A, B)):

- τ = the ⌈(1-α)(K+1)⌉-th smallest of {T_obs, T_1, ..., T_K} (critical value);
- p = (1 + #{k: T_k >= T_obs}) / (K + 1) (add-one permutation p-value);
- calibrated = clamp((T_obs - τ) / (s_max - τ), 0, 1), or relu(T_obs - τ)
  without s_max: 0 whenever the observed aggregate is not above the null at level α.

The null score matrices come from `vtalign.probe.null_scores` (no new kNN
search, no N x N work per permutation for CKA); the max-corrected z-score of
`vtalign.probe.calibration` is reported beside them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vtalign.ops.overlap_null import mutual_knn_null
from vtalign.probe._checks import check_backend, check_flag, check_fraction, check_seed
from vtalign.probe.alignment import as_layer_list
from vtalign.probe.calibration import _z
from vtalign.probe.features import FeatureFile
from vtalign.probe.metrics import (
    DEFAULT_WORKSPACE,
    KNN_METRICS,
    USES_K,
    check_int,
    check_metric,
    layer_count,
    layer_lists,
    list_scores,
)
from vtalign.probe.null_scores import CknnaNull, GramNull, draw_permutations, knn_null

Aggregate = str | Callable[[torch.Tensor], torch.Tensor]
AGGREGATES = ("max", "mean")
_EPS = 1e-12  # the floor of s_max - τ, so a τ at s_max gives 0, not a division by zero


def check_agg(agg) -> Aggregate:
    if isinstance(agg, str):
        if agg not in AGGREGATES:
            raise ValueError(f"agg must be 'max', 'mean' or a callable [La, Lb] -> scalar, got {agg!r}")
    elif not callable(agg):
        raise TypeError(f"agg must be 'max', 'mean' or a callable [La, Lb] -> scalar, got {type(agg).__name__}")
    return agg


def check_smax(smax) -> float | None:
    if smax is None:
        return None
    if isinstance(smax, bool) or not isinstance(smax, (int, float)) or not math.isfinite(smax) or smax <= 0:
        raise ValueError(f"smax must be a positive finite number or None, got {smax!r}")
    return float(smax)


def aggregate(scores: torch.Tensor, agg: Aggregate) -> torch.Tensor:
    """`[..., La, Lb]` -> `[...]`: max or mean over the layer pairs, or `agg` applied per matrix."""
    if agg == "max":
        return scores.flatten(-2).amax(-1)
    if agg == "mean":
        return scores.flatten(-2).mean(-1)
    flat = scores.reshape(-1, *scores.shape[-2:])
    out = torch.stack([torch.as_tensor(agg(s), dtype=scores.dtype).reshape(()) for s in flat])
    return out.reshape(scores.shape[:-2])


def critical_value(observed: torch.Tensor, null: torch.Tensor, alpha: float) -> torch.Tensor:
    """τ: the ⌈(1-α)(K+1)⌉-th order statistic of {observed} ∪ null (`null` `[K]`).
    The index is evaluated in floating point exactly as written, as calibrated-similarity
    does, so both pick the same order statistic for every α and K."""
    combined = torch.sort(torch.cat([observed.reshape(1), null])).values
    k = null.numel()
    return combined[max(0, min(int(math.ceil((1.0 - alpha) * (k + 1))) - 1, k))]


def calibrated_value(observed: torch.Tensor, tau: torch.Tensor, smax: float | None) -> torch.Tensor:
    """clamp((observed - τ) / max(s_max - τ, 1e-12), 0, 1), or relu(observed - τ) when s_max is None."""
    if smax is None:
        return torch.relu(observed - tau)
    return torch.clamp((observed - tau) / (smax - tau).clamp_min(_EPS), 0.0, 1.0)


@dataclass
class AristotelianCalibration:
    """One metric's calibrated aggregate.

    Attributes:
        scores: `[La, Lb]` float64 observed scores; best: the arg-max pair.
        statistic: T_obs = agg(scores); null: `[K]` float64 null aggregates T_k.
        tau, p_value, calibrated: as in the module docstring.
        z: (T_obs - mean(null)) / std(null) (±inf / 0 when the null has no spread).
    """
    metric: str
    agg: str
    scores: torch.Tensor
    best: tuple[int, int]
    statistic: float
    null: torch.Tensor
    tau: float
    p_value: float
    calibrated: float
    z: float
    alpha: float
    smax: float | None
    n_permutations: int

    def to_dict(self) -> dict:
        return dict(metric=self.metric, agg=self.agg, best=list(self.best), raw=self.statistic,
                    best_score=float(self.scores[self.best]), calibrated=self.calibrated, p_value=self.p_value,
                    tau=self.tau, z=self.z, alpha=self.alpha, smax=self.smax, permutations=self.n_permutations)

    def summary(self) -> str:
        return (f"{self.metric}: {self.agg} over {self.scores.numel()} layer pairs = {self.statistic:.4f}, "
                f"calibrated {self.calibrated:.4f} (τ = {self.tau:.4f} at α = {self.alpha:g}, "
                f"s_max = {self.smax}), p = {self.p_value:.3g}, z = {self.z:.2f} ({self.n_permutations} permutations)")


def calibrate_scores(scores: torch.Tensor, null: torch.Tensor, *, metric: str = "", agg: Aggregate = "max",
                     alpha: float = 0.05, smax: float | None = 1.0) -> AristotelianCalibration:
    """Calibrate an observed score matrix `[La, Lb]` against null matrices `[K, La, Lb]` (float64)."""
    agg = check_agg(agg)
    alpha = check_fraction("alpha", alpha)
    smax = check_smax(smax)
    scores, null = scores.to(torch.float64).cpu(), null.to(torch.float64).cpu()
    if null.dim() != 3 or null.shape[1:] != scores.shape or null.shape[0] < 1:
        raise ValueError(f"null must be [K >= 1, La, Lb] matching scores {tuple(scores.shape)}, "
                         f"got {tuple(null.shape)}")
    t_obs, t_null = aggregate(scores, agg), aggregate(null, agg)
    tau = critical_value(t_obs, t_null, alpha)
    p = (1 + int((t_null >= t_obs).sum())) / (t_null.numel() + 1)
    flat = int(torch.argmax(scores))
    return AristotelianCalibration(
        metric=metric, agg=agg if isinstance(agg, str) else getattr(agg, "__name__", "callable"), scores=scores,
        best=(flat // scores.shape[1], flat % scores.shape[1]), statistic=float(t_obs), null=t_null, tau=float(tau),
        p_value=p, calibrated=float(calibrated_value(t_obs, tau, smax)), z=float(_z(t_obs, t_null)),
        alpha=alpha, smax=smax, n_permutations=int(t_null.numel()))


def null_scores(metric: str, layers_a: Sequence[torch.Tensor], layers_b: Sequence[torch.Tensor],
                perms: torch.Tensor, *, k: int = 10, lists: tuple[torch.Tensor, torch.Tensor] | None = None,
                normalize: bool = True, backend: str = "auto",
                max_workspace_bytes: int = DEFAULT_WORKSPACE) -> tuple[torch.Tensor, torch.Tensor]:
    """(observed `[La, Lb]`, null `[P, La, Lb]`) float64 scores of A against B and
    against B[π] for each row π of `perms` `[P, N]`, for one metric of `METRICS`.

    `lists` = (idx_a `[La, N, k]`, idx_b `[Lb, N, k]`) reuses finished kNN searches
    (kNN metrics and CKNNA; the kNN metrics then need no layers: pass None); otherwise
    they are searched here. Both matrices come
    from the same code path, so a permutation equal to the identity reproduces
    the observed scores exactly."""
    check_metric(metric)
    n = int(lists[0].shape[1]) if layers_a is None and lists is not None else layer_count(layers_a)[0]
    ident = torch.arange(n).unsqueeze(0)
    allp = torch.cat([ident, perms.to("cpu", torch.int64)])
    if metric in USES_K and lists is None:
        kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
        lists = (layer_lists(layers_a, k, **kw), layer_lists(layers_b, k, **kw))
    if metric in KNN_METRICS:
        obs = list_scores(metric, lists[0], lists[1], backend=backend)
        if metric == "mutual_knn":  # the index answers every permutation without re-indexing B's lists
            return obs, mutual_knn_null(lists[0], lists[1], allp[1:])
        return obs, knn_null(lists[0], lists[1], metric, allp[1:], backend=backend)
    if metric == "cknna":
        s = CknnaNull(layers_a, layers_b, lists[0], lists[1], normalize=normalize, backend=backend,
                      max_workspace_bytes=max_workspace_bytes).scores(allp)
    else:
        s = GramNull(layers_a, layers_b, normalize=normalize,
                     max_workspace_bytes=max_workspace_bytes).scores(allp, unbiased=metric == "unbiased_cka")
    return s[0], s[1:]


def _layers(name: str, feats):
    """Layers as `layerwise_alignment` takes them (`[N, L, D]`, `[N, D]`, a list of `[N, D_l]`, a
    `FeatureFile`), checked; a streamed wrapper that already carries `.n` / `.dims` passes as is."""
    if isinstance(feats, Sequence) and hasattr(feats, "dims") and not isinstance(feats, FeatureFile):
        return feats
    return as_layer_list(name, feats)


def calibrated_alignment(layers_a: Sequence[torch.Tensor], layers_b: Sequence[torch.Tensor],
                         metric: str = "mutual_knn", k: int = 10, *, n_permutations: int = 200,
                         alpha: float = 0.05, smax: float | None | str = "auto", agg: Aggregate = "max",
                         seed: int = 0, generator: torch.Generator | None = None, normalize: bool = True,
                         backend: str = "auto", lists: tuple[torch.Tensor, torch.Tensor] | None = None,
                         max_workspace_bytes: int = DEFAULT_WORKSPACE) -> AristotelianCalibration:
    """Calibrated aggregate alignment of two models' layers for one metric.

    Args:
        layers_a, layers_b: La / Lb layers, same N: lists of `[N, D_l]` tensors, `[N, L, D]` or
            `[N, D]` tensors, or `FeatureFile`s (checked for shape and NaN / Inf first).
        metric: any of `METRICS`; k: neighbours (kNN metrics, CKNNA).
        n_permutations: K; alpha: the level of τ; agg: "max", "mean" or a callable.
        smax: the metric's largest score; "auto" = 1, or k for lcs_knn (an LCS
            length); None = the uncalibrated effect relu(T_obs - τ).
        seed / generator: permutation p is the p-th `torch.randperm(N, generator=g)`
            of `generator` (advanced in place) or, without one, of a CPU generator
            seeded with `seed`.
        lists: precomputed kNN lists, as in `null_scores`.

    Returns:
        An `AristotelianCalibration`; every argument is checked before any work.
    """
    # the options first (no data read), then the layers' shapes and values, then k against N
    check_metric(metric)
    check_int("n_permutations", n_permutations, lo=1)
    alpha = check_fraction("alpha", alpha)
    agg = check_agg(agg)
    if isinstance(smax, str):
        if smax != "auto":
            raise ValueError(f"smax must be a positive number, None or 'auto', got {smax!r}")
        smax = float(k) if metric == "lcs_knn" else 1.0
    smax = check_smax(smax)
    check_flag("normalize", normalize)
    check_backend(backend)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    layers_a, layers_b = _layers("layers_a", layers_a), _layers("layers_b", layers_b)
    (n, _), nb = layer_count(layers_a), layer_count(layers_b)[0]
    if nb != n:
        raise ValueError(f"layers_a has N={n} samples but layers_b has N={nb}")
    if metric in USES_K:
        check_int("k", k, lo=2 if metric == "cknna" else 1, hi=n - 1)
        if lists is not None:
            want = [(len(layers_a), n, k), (len(layers_b), n, k)]
            if not isinstance(lists, (tuple, list)) or len(lists) != 2 or any(
                    not isinstance(t, torch.Tensor) or tuple(t.shape) != w for t, w in zip(lists, want)):
                raise ValueError(f"lists must be (idx_a {want[0]}, idx_b {want[1]}) for these layers and k")
    if metric in ("cka", "unbiased_cka", "cknna") and n < 4:
        raise ValueError(f"{metric} needs N >= 4 samples, got N={n}")
    g = generator if generator is not None else torch.Generator().manual_seed(check_seed(seed))
    perms = draw_permutations(n, n_permutations, generator=g, device=g.device)
    obs, null = null_scores(metric, layers_a, layers_b, perms, k=k, lists=lists, normalize=normalize,
                            backend=backend, max_workspace_bytes=max_workspace_bytes)
    return calibrate_scores(obs, null, metric=metric, agg=agg, alpha=alpha, smax=smax)


__all__ = ["AGGREGATES", "AristotelianCalibration", "aggregate", "calibrate_scores", "calibrated_alignment",
           "calibrated_value", "critical_value", "null_scores"]
