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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from vtalign.ops._common import check_int
from vtalign.ops.knn import DEFAULT_WORKSPACE
from vtalign.ops.knn_lists import _check_pair_lists
from vtalign.probe._checks import check_backend, check_finite_tensor, check_flag, check_fraction, check_seed
from vtalign.probe.alignment import Features, _check_k, _names, check_layer_options, clamp_layers, layer_knn, read_pair
from vtalign.probe.metrics import KNN_METRICS, chance_level, list_scores

_BOOT_CHUNK = 64


def _check_count(name: str, v, minimum: int) -> int:
    return check_int(name, v, lo=minimum)


def _check_knn_metric(metric: str) -> None:
    if not isinstance(metric, str) or metric not in KNN_METRICS:
        raise ValueError(f"calibration supports the kNN-list metrics {KNN_METRICS}, got {metric!r} "
                         "(a permutation of a Gram metric needs the Gram terms recomputed per permutation)")


# Metrics that only see each list as a set: at k = N - 1 every list holds all N - 1
# other samples, so every permutation scores exactly the same (mutual kNN 1, cycle
# kNN 1) and the null has no spread. The order-aware metrics (LCS, edit distance)
# still vary with the order of the N - 1 others, which needs N >= 3.
_SET_METRICS = ("mutual_knn", "cycle_knn")


def check_calibration_k(metric: str, k: int, n: int) -> None:
    """Refuse the k for which the permutation null of `metric` has no spread."""
    hi = n - 2 if metric in _SET_METRICS else n - 1
    if n < 3:
        raise ValueError(f"calibration needs N >= 3 samples (with N = {n} every permutation of the "
                         f"neighbour lists scores the same), got N={n}")
    if not 1 <= k <= hi:
        why = (f"at k = N-1 every list holds all other samples, so every permutation scores the same and "
               f"the null of {metric} has no spread" if metric in _SET_METRICS and k == n - 1 else
               "k is the neighbours per sample")
        raise ValueError(f"k must be in [1, {'N-2' if metric in _SET_METRICS else 'N-1'}] = [1, {hi}] for "
                         f"calibrating {metric} ({why}), got k={k}")


def _z(score: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """(score - mean) / std of the null along dim 0; where the null has no spread
    (all permutations score the same) the z-score is +inf above it, -inf below and 0 on it."""
    mean, std = null.mean(0), null.std(0)
    flat = null.amax(0) == null.amin(0)
    diff = torch.where(flat, score - null[0], score - mean)
    inf = torch.full_like(diff, math.inf)
    z_flat = torch.where(diff > 0, inf, torch.where(diff < 0, -inf, torch.zeros_like(diff)))
    return torch.where(flat, z_flat, diff / torch.where(flat, torch.ones_like(std), std))


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
    _check_pair_lists(idx_a, idx_b)
    _check_count("n_permutations", n_permutations, 1)
    seed = check_seed(seed)
    check_backend(backend)
    n = idx_b.shape[-2]
    g = torch.Generator().manual_seed(seed)
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
    n = check_int("n", n, lo=1)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, lo=1)
    g = torch.Generator().manual_seed(check_seed(seed))
    for s in range(0, n_bootstrap, _BOOT_CHUNK):
        yield torch.randint(n, (min(_BOOT_CHUNK, n_bootstrap - s), n), generator=g)


def bootstrap_scores(per_sample: torch.Tensor, n_bootstrap: int = 1000, seed: int = 0) -> torch.Tensor:
    """Bootstrap replicates of the mean of per-sample scores.

    Args:
        per_sample: `[..., N]` per-sample scores (mean over N = the score), real
            and finite (NaN / Inf refused: a mean would carry them into every replicate).

    Returns:
        `[B, ...]` float64: replicate b is per_sample[..., idx_b].mean(-1) for the
        b-th index row of `bootstrap_indices(N, B, seed)`.
    """
    if not isinstance(per_sample, torch.Tensor):
        raise TypeError(f"per_sample must be a tensor [..., N], got {type(per_sample).__name__}")
    if per_sample.dim() < 1 or per_sample.numel() == 0:
        raise ValueError(f"per_sample must be a non-empty tensor [..., N], got shape {tuple(per_sample.shape)}")
    if per_sample.is_complex() or per_sample.dtype == torch.bool:
        raise TypeError(f"per_sample must hold real numbers, got {per_sample.dtype}")
    _check_count("n_bootstrap", n_bootstrap, 1)
    check_seed(seed)
    check_finite_tensor("per_sample", per_sample)
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
            Where a null has no spread (every permutation scores the same) z is
            +inf above it, -inf below and 0 on it -- the same rule as z_best -- never NaN.
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


def _check_calibration_options(metric, n_permutations, n_bootstrap, confidence, seed) -> None:
    _check_knn_metric(metric)
    _check_count("n_permutations", n_permutations, 2)
    _check_count("n_bootstrap", n_bootstrap, 2)
    check_fraction("confidence", confidence)
    check_seed(seed)


def calibrate_lists(idx_a: torch.Tensor, idx_b: torch.Tensor, metric: str = "mutual_knn", *,
                    n_permutations: int = 200, n_bootstrap: int = 1000, confidence: float = 0.95,
                    seed: int = 0, backend: str = "auto", concat: bool = False) -> Calibration:
    """`calibrate` from precomputed neighbour lists `[La, N, k]`, `[Lb, N, k]`."""
    _check_calibration_options(metric, n_permutations, n_bootstrap, confidence, seed)
    seed = check_seed(seed)
    check_backend(backend)
    check_flag("concat", concat)
    _check_pair_lists(idx_a, idx_b)
    check_calibration_k(metric, idx_a.shape[-1], idx_a.shape[-2])
    per = list_scores(metric, idx_a, idx_b, reduce="none", backend=backend)
    # the scores exactly as layerwise_alignment reports them (from integer totals where
    # the backend has them): a float mean of `per` would depend on the sample order
    scores = list_scores(metric, idx_a, idx_b, backend=backend)
    La, Lb, n = per.shape
    k = idx_a.shape[-1]
    flat = int(torch.argmax(scores))
    best = (flat // Lb, flat % Lb)
    best_score = float(scores[best])

    null = permutation_null(idx_a, idx_b, metric, n_permutations=n_permutations, seed=seed, backend=backend)
    null_mean, null_std = null.mean(0), null.std(0)
    null_max = null.flatten(1).max(1).values
    # a null without spread (possible for some data even at k <= N-2) gives z = ±inf or 0, not NaN
    z_best = float(_z(torch.tensor(best_score, dtype=torch.float64), null_max))
    p_best = (1 + int((null_max >= best_score).sum())) / (n_permutations + 1)
    with torch.no_grad():
        z_pairs = _z(scores, null)
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
                       n_permutations=n_permutations, n_bootstrap=n_bootstrap, seed=seed,
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

    Every argument is checked before anything is computed: k must also leave the
    permutation null some spread (k <= N-2 for mutual_knn and cycle_knn, whose
    null is constant at k = N-1), seed must be an int in [0, 2**63 - 1].
    """
    _check_calibration_options(metric, n_permutations, n_bootstrap, confidence, seed)
    check_layer_options([metric], k, normalize=normalize, concat=concat, outliers=outliers, backend=backend,
                        max_workspace_bytes=max_workspace_bytes)
    ra, rb, n = read_pair(feats_a, feats_b)
    _check_k(k, n, [metric])
    check_calibration_k(metric, k, n)
    la = clamp_layers(feats_a, ra, concat=concat, outliers=outliers)
    lb = clamp_layers(feats_b, rb, concat=concat, outliers=outliers)
    kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
    return calibrate_lists(layer_knn(la, k, **kw), layer_knn(lb, k, **kw), metric,
                           n_permutations=n_permutations, n_bootstrap=n_bootstrap, confidence=confidence,
                           seed=seed, backend=backend, concat=concat)


__all__: Sequence[str] = ("Calibration", "bootstrap_indices", "bootstrap_scores", "calibrate", "calibrate_lists",
                          "check_calibration_k", "permutation_null", "permute_lists")
