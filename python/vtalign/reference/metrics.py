"""Float64 oracles for the layer-pair alignment metrics (docs/design.md §3.2).

Written plainly from the definitions of platonic-rep's `AlignmentMetrics`
(github.com/minyoungg/platonic-rep, `metrics.py`): dense N x N masks and Gram
matrices, Python dynamic programmes, one pair of layers at a time. Slow and
memory-hungry on purpose; the fast paths in `vtalign.probe.metrics` are tested
against these.

Neighbour lists follow vtalign's kNN convention (self excluded, descending
similarity, ties to the lower index) where platonic-rep's unstable argsort
leaves ties unspecified; on data without ties the two agree.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import unit_rows

KNN_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")
GRAM_METRICS = ("cka", "unbiased_cka", "cknna")


def _f64(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    x = x.detach().to(torch.float64)
    return unit_rows(x) if normalize else x


def knn_lists(x: torch.Tensor, k: int, normalize: bool = True) -> torch.Tensor:
    """`[N, D]` -> `[N, k]` indices of the k most similar other rows (ties to the lower index)."""
    x = _f64(x, normalize)
    sim = x @ x.T
    sim.fill_diagonal_(float("-inf"))
    return torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]


def _mask(idx: torch.Tensor, n: int) -> torch.Tensor:
    m = torch.zeros(n, n, dtype=torch.float64)
    m[torch.arange(n).unsqueeze(1), idx] = 1.0
    return m


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """(1/N) Σ_i |N_A(i) ∩ N_B(i)| / k, by dense 0/1 masks."""
    n = a.shape[0]
    ma, mb = _mask(knn_lists(a, k, normalize), n), _mask(knn_lists(b, k, normalize), n)
    return float(((ma * mb).sum(1) / k).mean())


def cycle_knn(a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """Fraction of samples i found among the A-neighbours of i's B-neighbours
    (platonic-rep: `compute_knn_accuracy(knn_A[knn_B])`)."""
    ia, ib = knn_lists(a, k, normalize), knn_lists(b, k, normalize)
    n = a.shape[0]
    hits = 0
    for i in range(n):
        hits += any(i in ia[j].tolist() for j in ib[i].tolist())
    return hits / n


def lcs_length(x: list[int], y: list[int]) -> int:
    """Longest common subsequence of two sequences, classic O(len x * len y) table."""
    dp = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                dp[i][j] = dp[i - 1][j - 1] + 1
            else:
                dp[i][j] = max(dp[i - 1][j], dp[i][j - 1])
    return dp[-1][-1]


def levenshtein(x: list[int], y: list[int]) -> int:
    """Edit distance with unit insertion, deletion and substitution costs."""
    dp = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(len(x) + 1):
        dp[i][0] = i
    for j in range(len(y) + 1):
        dp[0][j] = j
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            sub = dp[i - 1][j - 1] + (x[i - 1] != y[j - 1])
            dp[i][j] = min(sub, dp[i - 1][j] + 1, dp[i][j - 1] + 1)
    return dp[-1][-1]


def lcs_knn(a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """Mean LCS length of the ordered neighbour lists (a number in 0..k, not divided by k)."""
    ia, ib = knn_lists(a, k, normalize).tolist(), knn_lists(b, k, normalize).tolist()
    return sum(lcs_length(x, y) for x, y in zip(ia, ib)) / len(ia)


def edit_distance_knn(a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """1 - mean Levenshtein distance of the ordered neighbour lists / k."""
    ia, ib = knn_lists(a, k, normalize).tolist(), knn_lists(b, k, normalize).tolist()
    return 1.0 - sum(levenshtein(x, y) for x, y in zip(ia, ib)) / len(ia) / k


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """trace(K H L H) with H = I - 11ᵀ/n (unnormalised, as platonic-rep)."""
    n = K.shape[0]
    H = torch.eye(n, dtype=torch.float64) - 1.0 / n
    return torch.trace(K @ H @ L @ H)


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Song et al. 2012, eq. 5, as platonic-rep writes it (K, L need not be symmetric)."""
    m = K.shape[0]
    Kt = K.clone().fill_diagonal_(0)
    Lt = L.clone().fill_diagonal_(0)
    val = ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
           - 2 * (Kt @ Lt).sum() / (m - 2))
    return val / (m * (m - 3))


def _cka(a, b, normalize, unbiased):
    a, b = _f64(a, normalize), _f64(b, normalize)
    K, L = a @ a.T, b @ b.T
    h = hsic_unbiased if unbiased else hsic_biased
    return float(h(K, L) / (torch.sqrt(h(K, K) * h(L, L)) + 1e-6))


def cka(a: torch.Tensor, b: torch.Tensor, normalize: bool = True) -> float:
    """Linear CKA: HSIC_b(K, L) / (sqrt(HSIC_b(K, K) HSIC_b(L, L)) + 1e-6)."""
    return _cka(a, b, normalize, False)


def unbiased_cka(a: torch.Tensor, b: torch.Tensor, normalize: bool = True) -> float:
    """Linear CKA with the unbiased HSIC estimator and the same +1e-6."""
    return _cka(a, b, normalize, True)


def cknna(a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """CKNNA: unbiased HSIC of (M∘K, M∘L), M the row-wise product of the two
    k-neighbour masks (self excluded), over sqrt of the self terms + 1e-6."""
    if k < 2:
        raise ValueError("CKNNA requires k >= 2")
    n = a.shape[0]
    a64, b64 = _f64(a, normalize), _f64(b, normalize)
    K, L = a64 @ a64.T, b64 @ b64.T
    mk, ml = _mask(knn_lists(a, k, normalize), n), _mask(knn_lists(b, k, normalize), n)

    def sim(X, Y, mx, my):
        m = mx * my
        return hsic_unbiased(m * X, m * Y)

    kl, kk, ll = sim(K, L, mk, ml), sim(K, K, mk, mk), sim(L, L, ml, ml)
    return float(kl) / float(torch.sqrt(kk * ll) + 1e-6)


PAIR_METRICS = {
    "mutual_knn": mutual_knn, "cycle_knn": cycle_knn, "lcs_knn": lcs_knn,
    "edit_distance_knn": edit_distance_knn, "cka": cka, "unbiased_cka": unbiased_cka, "cknna": cknna,
}


def pair_score(metric: str, a: torch.Tensor, b: torch.Tensor, k: int, normalize: bool = True) -> float:
    """One (layer of A, layer of B) score; `k` is ignored by cka and unbiased_cka."""
    fn = PAIR_METRICS[metric]
    if metric in ("cka", "unbiased_cka"):
        return fn(a, b, normalize)
    return fn(a, b, k, normalize)


def all_pairs(metric: str, layers_a: list[torch.Tensor], layers_b: list[torch.Tensor], k: int,
              normalize: bool = True) -> torch.Tensor:
    """`[La, Lb]` float64 scores by the per-pair loop (platonic-rep's `compute_score` order)."""
    out = torch.empty(len(layers_a), len(layers_b), dtype=torch.float64)
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            out[i, j] = pair_score(metric, a, b, k, normalize)
    return out


def remove_outliers(feats: torch.Tensor, q: float = 0.95, exact: bool = False) -> torch.Tensor:
    """platonic-rep's clamp to ±t. exact: t = sorted(|x|.flatten())[int(q * numel)];
    approximate: t = mean over samples (dim 0) of the per-sample q-quantile of |x|
    (linear interpolation, torch.quantile's default)."""
    f = feats.to(torch.float64)
    if q == 1:
        return f
    if exact:
        t = f.reshape(-1).abs().sort().values[int(q * f.numel())]
    else:
        t = torch.quantile(f.abs().flatten(start_dim=1), q, dim=1).mean()
    return f.clamp(-t, t)
