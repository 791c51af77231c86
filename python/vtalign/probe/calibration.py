"""Is a layer-pair score more than chance? Calibration for the kNN-list metrics.

- chance level: the closed form where one exists (mutual kNN: k / (N - 1)),
  and the permutation null's mean for every metric;
- permutation null: shuffle the sample correspondence of B. B's neighbour
  lists need no new search -- with B' = B[π], the neighbours of sample i of B'
  are π⁻¹(N_B(π(i))) in the same order -- so each permutation costs one pass of
  the list kernel over all La x Lb pairs;
- the best pair is the maximum over La·Lb pairs, so its z-score and p-value are
  taken against the null distribution of that maximum (max over pairs of each
  permuted score matrix), which corrects for the search over pairs;
- bootstrap confidence intervals over samples: the per-sample scores
  (`list_scores(reduce="none")`, e.g. overlaps / k) are resampled with
  replacement, the kNN lists held fixed. All replicates of all pairs come from
  one GEMM of the per-sample scores with resampling count vectors.

Everything is seeded (`torch.Generator`) and deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from vtalign.ops.knn import DEFAULT_WORKSPACE
from vtalign.probe.alignment import Features, _check_k, _names, layer_knn, prepare_layers
from vtalign.probe.metrics import KNN_METRICS, chance_level, layer_count, list_scores

_BOOT_CHUNK = 64


def _check_count(name: str, v, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return v


def _check_knn_metric(metric: str) -> None:
    if metric not in KNN_METRICS:
        raise ValueError(f"calibration supports the kNN-list metrics {KNN_METRICS}, got {metric!r} "
                         "(a permutation of a Gram metric needs the Gram terms recomputed per permutation)")


def permute_lists(idx: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` of the features re-indexed as x[perm], without a
    new search: row i becomes inv[idx[:, perm[i]]] (order kept)."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv[idx[:, perm]]


def permutation_null(idx_a: torch.Tensor, idx_b: torch.Tensor, metric: str = "mutual_knn", *,
                     n_permutations: int = 200, seed: int = 0, backend: str = "auto") -> torch.Tensor:
    """Score matrices of `n_permutations` random sample correspondences.

    Args:
        idx_a: `[La, N, k]` neighbour lists of A; idx_b: `[Lb, N, k]` of B.
        metric: one of `KNN_METRICS`.

    Returns:
        `[P, La, Lb]` float64; permutation p uses the p-th `torch.randperm(N)` of a
        generator seeded with `seed`.
    """
    _check_knn_metric(metric)
    _check_count("n_permutations", n_permutations, 1)
    n = idx_b.shape[-2]
    g = torch.Generator().manual_seed(int(seed))
    # both lists on idx_a's device (the overlap kernels take one device); the
    # permutations come from the CPU generator, so every device draws the same ones
    ib = idx_b.to(device=idx_a.device, dtype=torch.int64)
    out = []
    for _ in range(n_permutations):
        perm = torch.randperm(n, generator=g).to(idx_a.device)
        out.append(list_scores(metric, idx_a, permute_lists(ib, perm), backend=backend))
    return torch.stack(out)


def bootstrap_indices(n: int, n_bootstrap: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """The resampled sample indices, `[c, n]` blocks of at most 64 replicates in
    order: block b is `torch.randint(n, (c, n))` from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(int(seed))
    for s in range(0, n_bootstrap, _BOOT_CHUNK):
        yield torch.randint(n, (min(_BOOT_CHUNK, n_bootstrap - s), n), generator=g)


def bootstrap_scores(per_sample: torch.Tensor, n_bootstrap: int = 1000, seed: int = 0) -> torch.Tensor:
    """Bootstrap replicates of the mean of per-sample scores.

    Args:
        per_sample: `[..., N]` per-sample scores (mean over N = the score).

    Returns:
        `[B, ...]` float64: replicate b is per_sample[..., idx_b].mean(-1) for the
        b-th index row of `bootstrap_indices(N, B, seed)`.
    """
    if not isinstance(per_sample, torch.Tensor) or per_sample.dim() < 1 or per_sample.numel() == 0:
        raise ValueError("per_sample must be a non-empty tensor [..., N]")
    _check_count("n_bootstrap", n_bootstrap, 1)
    lead, n = per_sample.shape[:-1], per_sample.shape[-1]
    flat = per_sample.reshape(-1, n).to(torch.float64).cpu()
    reps = []
    for idx in bootstrap_indices(n, n_bootstrap, seed):
        # counts[b, i] = how often sample i is drawn in replicate b: a resampled
        # mean is a weighted mean, so all pairs of a block are one GEMM.
        counts = torch.zeros(idx.shape[0], n, dtype=torch.float64)
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        reps.append((counts @ flat.T) / n)
    return torch.cat(reps).reshape(n_bootstrap, *lead)


@dataclass
class Calibration:
    """Scores of every layer pair with their null distribution and uncertainty.

    Attributes:
        scores: `[La, Lb]` float64 observed scores; best / best_score as in `LayerAlignment`.
        chance: closed-form chance level (NaN where none exists).
        null_mean, null_std: `[La, Lb]` mean / std of the permutation null per pair.
        null_max: `[P]` max over all pairs of each permuted score matrix.
        z_best: (best_score - mean(null_max)) / std(null_max): the best pair against
            the best of unrelated data, so it accounts for the search over La·Lb pairs.
        p_best: (1 + #{null_max >= best_score}) / (P + 1) (permutation p-value of the max).
        z_pairs, p_pairs: `[La, Lb]` per-pair, uncorrected for the search.
        ci_low, ci_high: `[La, Lb]` percentile bootstrap interval at `confidence`.
        best_stability: fraction of bootstrap replicates whose best pair is `best`.
    """
    metric: str
    k: int
    n: int
    scores: torch.Tensor
    best: tuple[int, int]
    best_score: float
    chance: float
    null_mean: torch.Tensor
    null_std: torch.Tensor
    null_max: torch.Tensor
    z_best: float
    p_best: float
    z_pairs: torch.Tensor
    p_pairs: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor
    best_stability: float
    confidence: float
    n_permutations: int
    n_bootstrap: int
    seed: int
    names_a: list[str]
    names_b: list[str]

    @property
    def best_ci(self) -> tuple[float, float]:
        """The bootstrap interval of the best pair."""
        return float(self.ci_low[self.best]), float(self.ci_high[self.best])

    def summary(self) -> str:
        """A few lines for a terminal or a markdown report."""
        i, j = self.best
        lo, hi = self.best_ci
        chance = "n/a" if math.isnan(self.chance) else f"{self.chance:.4f}"
        return "\n".join([
            f"{self.metric} (k={self.k}, N={self.n}): best pair A[{self.names_a[i]}] x B[{self.names_b[j]}] "
            f"= {self.best_score:.4f}, {100 * self.confidence:g}% CI [{lo:.4f}, {hi:.4f}]",
            f"chance {chance}; permutation null mean {float(self.null_mean.mean()):.4f}, "
            f"null max over {self.scores.numel()} pairs {float(self.null_max.mean()):.4f} "
            f"± {float(self.null_max.std()):.4f}",
            f"z = {self.z_best:.2f}, p = {self.p_best:.3g} (max over pairs, {self.n_permutations} permutations); "
            f"best pair kept in {100 * self.best_stability:.1f}% of {self.n_bootstrap} bootstrap replicates",
        ])


def calibrate_lists(idx_a: torch.Tensor, idx_b: torch.Tensor, metric: str = "mutual_knn", *,
                    n_permutations: int = 200, n_bootstrap: int = 1000, confidence: float = 0.95,
                    seed: int = 0, backend: str = "auto", concat: bool = False) -> Calibration:
    """`calibrate` from precomputed neighbour lists `[La, N, k]`, `[Lb, N, k]`."""
    _check_knn_metric(metric)
    _check_count("n_permutations", n_permutations, 2)
    _check_count("n_bootstrap", n_bootstrap, 2)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    per = list_scores(metric, idx_a, idx_b, reduce="none", backend=backend)
    scores = per.mean(-1)
    La, Lb, n = per.shape
    k = idx_a.shape[-1]
    flat = int(torch.argmax(scores))
    best = (flat // Lb, flat % Lb)
    best_score = float(scores[best])

    null = permutation_null(idx_a, idx_b, metric, n_permutations=n_permutations, seed=seed, backend=backend)
    null_mean, null_std = null.mean(0), null.std(0)
    null_max = null.flatten(1).max(1).values
    sd, mu = float(null_max.std()), float(null_max.mean())
    if sd > 0:
        z_best = (best_score - mu) / sd
    else:  # a degenerate null (e.g. k = N - 1: every permutation scores the same)
        z_best = math.inf if best_score > mu else 0.0
    p_best = (1 + int((null_max >= best_score).sum())) / (n_permutations + 1)
    with torch.no_grad():
        z_pairs = (scores - null_mean) / null_std
        p_pairs = (1 + (null >= scores).sum(0)).to(torch.float64) / (n_permutations + 1)

    # Bootstrap seed is offset so replicates are not correlated with the permutations.
    reps = bootstrap_scores(per, n_bootstrap, seed + 1)
    alpha = (1 - confidence) / 2
    qs = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    band = torch.quantile(reps.reshape(n_bootstrap, -1), qs, dim=0).reshape(2, La, Lb)
    stability = float((reps.reshape(n_bootstrap, -1).argmax(1) == flat).double().mean())
    return Calibration(metric=metric, k=k, n=n, scores=scores, best=best, best_score=best_score,
                       chance=chance_level(metric, n, k), null_mean=null_mean, null_std=null_std,
                       null_max=null_max, z_best=z_best, p_best=p_best, z_pairs=z_pairs, p_pairs=p_pairs,
                       ci_low=band[0], ci_high=band[1], best_stability=stability, confidence=float(confidence),
                       n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=int(seed),
                       names_a=_names(La, concat), names_b=_names(Lb, concat))


def calibrate(feats_a: Features, feats_b: Features, metric: str = "mutual_knn", k: int = 10, *,
              n_permutations: int = 200, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
              normalize: bool = True, concat: bool = False, outliers: str | None = None,
              backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE) -> Calibration:
    """Layer-pair scores with chance level, permutation null, max-corrected z / p
    for the best pair and bootstrap intervals.

    Args:
        feats_a, feats_b: `[N, L, D]` tensors or lists of `[N, D_l]` layers (same N).
        metric: a kNN-list metric: "mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn".
        k: neighbours per sample.
        n_permutations: size of the permutation null (p-values resolve 1 / (P + 1)).
        n_bootstrap: bootstrap replicates for the intervals.
        confidence: interval coverage, e.g. 0.95.
        seed: seeds both the permutations (seed) and the bootstrap (seed + 1).
        normalize, concat, outliers, backend: as in `layerwise_alignment`.

    Returns:
        A `Calibration`; `.summary()` prints it.
    """
    _check_knn_metric(metric)
    la = prepare_layers("feats_a", feats_a, concat=concat, outliers=outliers)
    lb = prepare_layers("feats_b", feats_b, concat=concat, outliers=outliers)
    n, nb = layer_count(la)[0], layer_count(lb)[0]
    if nb != n:
        raise ValueError(f"feats_a and feats_b must have the same number of samples, got {n} and {nb}")
    _check_k(k, n, [metric])
    kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
    return calibrate_lists(layer_knn(la, k, **kw), layer_knn(lb, k, **kw), metric,
                           n_permutations=n_permutations, n_bootstrap=n_bootstrap, confidence=confidence,
                           seed=seed, backend=backend, concat=concat)


__all__: Sequence[str] = ("Calibration", "bootstrap_indices", "bootstrap_scores", "calibrate", "calibrate_lists",
                          "permutation_null", "permute_lists")
