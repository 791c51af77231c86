"""platonic-rep (Huh et al. 2024, github.com/minyoungg/platonic-rep) with vtalign's kernels.

Replace `import metrics` / `from measure_alignment import compute_score` with
`from vtalign.compat.platonic import AlignmentMetrics, compute_score`. Names,
signatures, defaults and return types follow upstream's `metrics.py` and
`measure_alignment.py`. `compute_score` scores every layer pair in one
all-pairs pass (per-layer kNN lists / Gram statistics computed once), not the
upstream per-pair loop.

Documented differences, each where upstream is ill-defined:
- ties in a neighbour list go to the lower index (upstream's argsort is unstable);
- `cknna(topk=None)` means topk = N - 1 (upstream compares None < 2 first and raises);
- `svcca` uses exact canonical correlations of the top `cca_dim` left singular
  vectors (upstream: randomised `svd_lowrank`, sklearn's iterative CCA and
  1e-10 random jitter, so its value changes from run to run);
- `prepare_features` keeps tensors on their device (upstream moves them to CUDA).
"""
from __future__ import annotations

import torch

from vtalign.probe.metrics import all_pair_scores
from vtalign.probe.outliers import remove_outliers as _clamp

__all__ = ["AlignmentMetrics", "compute_score", "prepare_features", "remove_outliers"]


def _pair(metric: str, feats_a: torch.Tensor, feats_b: torch.Tensor, k: int = 10) -> float:
    # upstream measures the features as given (compute_score normalises first)
    return float(all_pair_scores([metric], [feats_a], [feats_b], k, normalize=False)[metric][0, 0])


def _hsic(K: torch.Tensor, L: torch.Tensor, unbiased: bool) -> torch.Tensor:
    m = K.shape[0]
    if not unbiased:
        H = torch.eye(m, dtype=K.dtype, device=K.device) - 1 / m
        return torch.trace(K @ H @ L @ H)
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    return ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
            - 2 * (Kt @ Lt).sum() / (m - 2)) / (m * (m - 3))


def _svcca_basis(x: torch.Tensor, cca_dim: int) -> torch.Tensor:
    x = x.double()
    x = x - x.mean(0)
    x = x / (x.std(0) + 1e-8)
    return torch.linalg.svd(x, full_matrices=False).U[:, :cca_dim]


class AlignmentMetrics:
    """platonic-rep's metric namespace; every method takes `[N, D]` feature tensors."""

    SUPPORTED_METRICS = ["cycle_knn", "mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca",
                         "edit_distance_knn"]

    @staticmethod
    def measure(metric, *args, **kwargs):
        if metric not in AlignmentMetrics.SUPPORTED_METRICS:
            raise ValueError(f"Unrecognized metric: {metric}")
        return getattr(AlignmentMetrics, metric)(*args, **kwargs)

    @staticmethod
    def cycle_knn(feats_A, feats_B, topk) -> float:
        return _pair("cycle_knn", feats_A, feats_B, topk)

    @staticmethod
    def mutual_knn(feats_A, feats_B, topk) -> float:
        return _pair("mutual_knn", feats_A, feats_B, topk)

    @staticmethod
    def lcs_knn(feats_A, feats_B, topk) -> torch.Tensor:
        return torch.tensor(_pair("lcs_knn", feats_A, feats_B, topk), dtype=torch.float32)

    @staticmethod
    def edit_distance_knn(feats_A, feats_B, topk) -> torch.Tensor:
        return torch.tensor(_pair("edit_distance_knn", feats_A, feats_B, topk), dtype=torch.float64)

    @staticmethod
    def cka(feats_A, feats_B, kernel_metric="ip", rbf_sigma=1.0, unbiased=False) -> float:
        if kernel_metric == "ip":
            return _pair("unbiased_cka" if unbiased else "cka", feats_A, feats_B)
        if kernel_metric != "rbf":
            raise ValueError(f"Invalid kernel metric {kernel_metric}")
        # an RBF kernel has no feature-space shortcut: dense N x N, as upstream
        K = torch.exp(-torch.cdist(feats_A, feats_A) ** 2 / (2 * rbf_sigma ** 2))
        L = torch.exp(-torch.cdist(feats_B, feats_B) ** 2 / (2 * rbf_sigma ** 2))
        kl, kk, ll = (_hsic(x, y, unbiased) for x, y in ((K, L), (K, K), (L, L)))
        return (kl / (torch.sqrt(kk * ll) + 1e-6)).item()

    @staticmethod
    def unbiased_cka(*args, **kwargs) -> float:
        kwargs["unbiased"] = True
        return AlignmentMetrics.cka(*args, **kwargs)

    @staticmethod
    def svcca(feats_A, feats_B, cca_dim=10):
        import numpy as np

        ua, ub = _svcca_basis(feats_A, cca_dim), _svcca_basis(feats_B, cca_dim)
        # canonical correlations of two orthonormal bases: singular values of Ua^T Ub
        rho = torch.linalg.svdvals(ua.T @ ub).clamp(max=1.0)
        return np.float64(rho.mean().item())

    @staticmethod
    def cknna(feats_A, feats_B, topk=None, distance_agnostic=False, unbiased=True) -> float:
        n = feats_A.shape[0]
        if topk is None:
            topk = n - 1
        if topk < 2:
            raise ValueError("CKNNA requires topk >= 2")
        if unbiased and not distance_agnostic:
            return _pair("cknna", feats_A, feats_B, topk)
        K, L = feats_A @ feats_A.T, feats_B @ feats_B.T

        def sim(K, L):
            Kh = K.clone().fill_diagonal_(float("-inf")) if unbiased else K
            Lh = L.clone().fill_diagonal_(float("-inf")) if unbiased else L
            mk = torch.zeros(n, n, dtype=K.dtype, device=K.device).scatter_(1, torch.topk(Kh, topk, dim=1)[1], 1)
            ml = torch.zeros(n, n, dtype=K.dtype, device=K.device).scatter_(1, torch.topk(Lh, topk, dim=1)[1], 1)
            mask = mk * ml
            return mask * 1.0 if distance_agnostic else _hsic(mask * K, mask * L, unbiased)

        kl, kk, ll = sim(K, L), sim(K, K), sim(L, L)
        return kl.item() / (torch.sqrt(kk * ll) + 1e-6).item()


def remove_outliers(feats, q, exact=False, max_threshold=None):
    """Clamp |x| at the q-quantile (exact: global sort; else mean of per-sample quantiles)."""
    if q == 1:
        return feats
    return _clamp(feats, q, exact=exact)


def prepare_features(feats, q=0.95, exact=False):
    """remove_outliers on a tensor or on each tensor of a list, as float32."""
    if isinstance(feats, torch.Tensor):
        return remove_outliers(feats.float(), q=q, exact=exact)
    if isinstance(feats, list):
        return [remove_outliers(f.float(), q=q, exact=exact) for f in feats]
    raise ValueError(f"Unsupported input type for prepare_features: {type(feats)}")


def compute_score(x_feats, y_feats, metric="mutual_knn", topk=10, normalize=True):
    """Best layer pair of `x_feats`, `y_feats` (`[N, L, D]` tensors or lists of `[N, D]`).

    Returns `(best_alignment_score, (i, j))` with upstream's rule: the first pair,
    in row-major order, whose score beats every earlier one and 0; `(0, None)`
    when no score is positive.
    """
    xs = [x_feats[:, i, :] for i in range(x_feats.shape[1])] if isinstance(x_feats, torch.Tensor) else list(x_feats)
    ys = [y_feats[:, j, :] for j in range(y_feats.shape[1])] if isinstance(y_feats, torch.Tensor) else list(y_feats)
    if metric not in AlignmentMetrics.SUPPORTED_METRICS:
        raise ValueError(f"Unrecognized metric: {metric}")
    if metric == "svcca":
        ua = [_svcca_basis(torch.nn.functional.normalize(x, dim=-1) if normalize else x, 10) for x in xs]
        ub = [_svcca_basis(torch.nn.functional.normalize(y, dim=-1) if normalize else y, 10) for y in ys]
        scores = torch.tensor([[float(torch.linalg.svdvals(a.T @ b).clamp(max=1.0).mean()) for b in ub] for a in ua])
    else:
        k = topk if "knn" in metric else 10
        if metric == "cknna" and "knn" in metric and k is None:
            k = xs[0].shape[0] - 1
        scores = all_pair_scores([metric], xs, ys, k, normalize=normalize)[metric]
    best_score, best = 0, None
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            s = float(scores[i, j])
            if s > best_score:
                best_score, best = s, (i, j)
    return best_score, best
