"""All-layer-pair alignment metrics (docs/design.md §3.2), each equal to platonic-rep's
`AlignmentMetrics` definition on the same (by default L2-normalised) features.

Nothing here is computed once per pair of layers when it can be computed once
per layer:

- kNN metrics (`mutual_knn`, `cycle_knn`, `lcs_knn`, `edit_distance_knn`): one
  kNN search per layer (`vtalign.ops.cosine_knn`), then one pass over the
  `[L, N, k]` index lists for every pair at once (`knn_overlap` for mutual kNN,
  the C++ `list_scores` kernel for the others).
- `cka`, `unbiased_cka` (one pass serves both, `GramTerms`): on centred
  features both HSIC estimators reduce to Frobenius inner products of Gram
  matrices, <K_a, L_b> = ||A_aᵀ B_b||², plus per-layer diagonals. We take
  whichever of two exact routes costs fewer flops: the *Gram route* builds row
  blocks of every layer's Gram once and contracts all pairs with one GEMM per
  block (N² work, good for N <= D); the *covariance route* accumulates the
  D_a x D_b cross-products (N·D_a·D_b work, good for N > D, and the only way at
  N = 50k). Neither holds an N x N matrix.
- `cknna`: the masked Gram entries it needs are exactly the similarities on the
  kNN lists (j ∈ N_A(i) ∩ N_B(i)), so the N·k list values replace the
  N x N Grams and the C++ `cknna_terms` kernel sums them for every pair.

Products of float32 features run as float32 GEMMs (on centred data, so nothing
cancels); every sum across GEMM blocks and every HSIC term is float64.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vtalign.ops import cosine_knn
from vtalign.ops._common import check_int, full_precision_matmul, unit_rows
from vtalign.ops.knn import DEFAULT_WORKSPACE
from vtalign.ops.knn_lists import KNN_METRICS, _check_pair_lists, _cknna_terms, _list_backend, list_scores

GRAM_METRICS = ("cka", "unbiased_cka", "cknna")
METRICS = KNN_METRICS + GRAM_METRICS
USES_K = KNN_METRICS + ("cknna",)

Layers = Sequence[torch.Tensor]


def layer_count(layers: Layers) -> tuple[int, list[int]]:
    """(N, [D_l]) of a layer sequence without reading a streamed one
    (`vtalign.probe.features.FeatureFile` and the probe's wrappers carry `.n` / `.dims`)."""
    if hasattr(layers, "dims"):
        return int(layers.n), [int(d) for d in layers.dims]
    return int(layers[0].shape[0]), [int(x.shape[1]) for x in layers]


def check_metric(metric: str) -> None:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


# ----------------------------------------------------------------- kNN lists



# ---------------------------------------------------------------- Gram metrics
def _unit64(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    return unit_rows(x, torch.float64) if normalize else x.to(torch.float64)


def _row_chunk(n_cols: int, workspace: int, min_rows: int = 64) -> int:
    """Rows per chunk so that the ~4 float64 temporaries of a chunk (cast,
    normalised, centred, product) fit in `workspace` bytes together."""
    return max(min_rows, workspace // max(1, 4 * 8 * n_cols))


class _LayerStats:
    """Per-layer O(N·D) statistics, read in row chunks (one layer in memory at a
    time): the column mean μ of the (normalised) rows and diag(K_c) = ||x_i - μ||²."""

    def __init__(self, x: torch.Tensor, normalize: bool, workspace: int):
        n, d = x.shape
        chunk = _row_chunk(d, workspace)
        colsum = torch.zeros(d, dtype=torch.float64, device=x.device)
        for s in range(0, n, chunk):
            colsum += _unit64(x[s:s + chunk], normalize).sum(0)
        self.mean = colsum / n
        diag = torch.empty(n, dtype=torch.float64, device=x.device)
        for s in range(0, n, chunk):
            xc = _unit64(x[s:s + chunk], normalize) - self.mean
            diag[s:s + chunk] = (xc * xc).sum(1)
        self.diag = diag.cpu()


def _gemm_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _centred(x: torch.Tensor, s: int, e: int, normalize: bool, mean: torch.Tensor) -> torch.Tensor:
    """Rows s:e normalised and centred in float64, then cast to the GEMM dtype:
    centring first keeps the Gram entries free of a large common offset, so
    float32 products lose nothing to cancellation."""
    return (_unit64(x[s:e], normalize) - mean).to(_gemm_dtype(x))


def _frob_cov(xa: torch.Tensor, xb: torch.Tensor, ma: torch.Tensor, mb: torch.Tensor, normalize: bool,
              workspace: int) -> float:
    """<K_c, L_c> = ||X̃_aᵀ X̃_b||² by row-chunked D_a x D_b accumulators (float64
    across chunks); X_b's columns are blocked so the accumulator fits `workspace`."""
    n, da = xa.shape
    db = xb.shape[1]
    width = max(1, min(db, workspace // (2 * 8 * da)))
    chunk = _row_chunk(da + width, workspace // 2)
    total = 0.0
    for c0 in range(0, db, width):
        acc = torch.zeros(da, min(width, db - c0), dtype=torch.float64, device=xa.device)
        for s in range(0, n, chunk):
            ca = _centred(xa, s, s + chunk, normalize, ma)
            cb = _centred(xb, s, s + chunk, normalize, mb)[:, c0:c0 + width]  # rows normalise whole
            acc += (ca.T @ cb).to(torch.float64)
        total += float((acc * acc).sum())
    return total


def _frob_gram(la: Layers, lb: Layers, normalize: bool, workspace: int):
    """<K_c,a, L_c,b> for all pairs, <K_c, K_c> and diag(K_c) per layer, and the
    column means, from row blocks of the centred Grams (layers in memory).

    Each layer is normalised and centred once; each block of each layer's Gram
    is built once (GEMM in the features' dtype) and one float64 GEMM contracts
    all La x Lb pairs. Grams are symmetric, so a row block only needs the
    columns from its own start on: entries above the diagonal are scaled by
    sqrt(2) on both sides so their products count twice, halving the Gram GEMMs."""

    def prep(layers):
        xs, diags = [], []
        for x in layers:
            u = _unit64(x, normalize)
            u -= u.mean(0)
            diags.append((u * u).sum(1).cpu())
            xs.append(u.to(_gemm_dtype(x)))
        return xs, torch.stack(diags)

    (xa, diag_a), (xb, diag_b) = prep(la), prep(lb)
    n, dev = xa[0].shape[0], xa[0].device
    per_row = (len(xa) + len(xb)) * n * 8
    chunk = max(1, min(n, workspace // max(1, per_row)))
    cross = torch.zeros(len(xa), len(xb), dtype=torch.float64, device=dev)
    self_a = torch.zeros(len(xa), dtype=torch.float64, device=dev)
    self_b = torch.zeros(len(xb), dtype=torch.float64, device=dev)
    root2 = 2.0 ** 0.5
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # weight of K[i, j] (i = s + row, j = s + col): 0 below the diagonal (its
        # mirror is counted), 1 on it, sqrt(2) above it
        off = torch.arange(n - s, device=dev)[None, :] - torch.arange(e - s, device=dev)[:, None]
        w = (off > 0).to(torch.float64) * root2 + (off == 0).to(torch.float64)
        ga = torch.empty(len(xa), e - s, n - s, dtype=torch.float64, device=dev)
        gb = torch.empty(len(xb), e - s, n - s, dtype=torch.float64, device=dev)
        for g, xs in ((ga, xa), (gb, xb)):
            for l, x in enumerate(xs):
                g[l].copy_(x[s:e] @ x[s:].T)
            g.mul_(w)
        ga, gb = ga.flatten(1), gb.flatten(1)
        cross += ga @ gb.T
        self_a += (ga * ga).sum(1)
        self_b += (gb * gb).sum(1)
    return cross.cpu(), self_a.cpu(), self_b.cpu(), diag_a, diag_b


def _use_gram_route(la: Layers, lb: Layers) -> bool:
    n, dims_a = layer_count(la)
    _, dims_b = layer_count(lb)
    da, db = sum(dims_a), sum(dims_b)
    gram = n * n * (da + db + len(la) * len(lb)) // 2
    cov = n * (da * db + sum(d * d for d in dims_a) + sum(d * d for d in dims_b))
    # The Gram route also holds float64 copies of every layer; keep it to sizes
    # where that is small next to the features themselves.
    return gram < cov and n * (da + db) * 8 <= (1 << 30)


class GramTerms:
    """Everything linear CKA (biased and unbiased) needs, from one pass over the
    centred features X̃ = X̂ - μ (X̂ the normalised rows): cross[a, b] = <K_c,a, L_c,b>,
    self_a / self_b = <K_c, K_c>, and diag(K_c) `[L, N]` per layer (float64, CPU).

    Centring is free for both estimators: the biased HSIC trace(KHLH) is
    <K_c, L_c> by definition, and the unbiased HSIC is invariant to translating
    the features (a U-statistic of differences x_i - x_j), while K_c 1 = 0 turns
    its row-sum terms into sums of the diagonal."""

    @full_precision_matmul()  # the Gram sums are differenced: no TF32 here
    def __init__(self, layers_a: Layers, layers_b: Layers, *, normalize: bool = True,
                 max_workspace_bytes: int = DEFAULT_WORKSPACE, route: str = "auto"):
        if route not in ("auto", "gram", "covariance"):
            raise ValueError(f"route must be 'auto', 'gram' or 'covariance', got {route!r}")
        ws = int(max_workspace_bytes)
        self.n = layer_count(layers_a)[0]
        self.route = route if route != "auto" else ("gram" if _use_gram_route(layers_a, layers_b) else "covariance")
        if self.route == "gram":
            self.cross, self.self_a, self.self_b, self.diag_a, self.diag_b = \
                _frob_gram(layers_a, layers_b, normalize, ws)
            return
        # Streaming-friendly: per-layer statistics and products in row chunks.
        sa = [_LayerStats(x, normalize, ws) for x in layers_a]
        sb = [_LayerStats(x, normalize, ws) for x in layers_b]
        ma, mb = [s.mean for s in sa], [s.mean for s in sb]
        self.cross = torch.tensor([[_frob_cov(xa, xb, ma[i], mb[j], normalize, ws) for j, xb in enumerate(layers_b)]
                                   for i, xa in enumerate(layers_a)], dtype=torch.float64).reshape(len(sa), len(sb))
        self.self_a = torch.tensor([_frob_cov(x, x, ma[i], ma[i], normalize, ws)
                                    for i, x in enumerate(layers_a)], dtype=torch.float64)
        self.self_b = torch.tensor([_frob_cov(x, x, mb[i], mb[i], normalize, ws)
                                    for i, x in enumerate(layers_b)], dtype=torch.float64)
        self.diag_a = torch.stack([s.diag for s in sa])
        self.diag_b = torch.stack([s.diag for s in sb])

    def cka(self, unbiased: bool = False) -> torch.Tensor:
        """`[La, Lb]` HSIC(K, L) / (sqrt(HSIC(K, K) HSIC(L, L)) + 1e-6)."""
        if not unbiased:
            return _cka_ratio(self.cross, self.self_a, self.self_b)
        if self.n < 4:
            raise ValueError(f"unbiased HSIC needs N >= 4 samples, got N={self.n}")
        m = float(self.n)
        da, db = self.diag_a, self.diag_b
        # With K_c 1 = 0 the row sums of K̃ = K_c - diag are -diag(K_c).
        za, zb = -da.sum(1), -db.sum(1)
        dd = da @ db.T
        kl = _hsic_u(self.cross, dd, za[:, None], zb[None, :], dd, m)
        kk = _hsic_u(self.self_a, (da * da).sum(1), za, za, (da * da).sum(1), m)
        ll = _hsic_u(self.self_b, (db * db).sum(1), zb, zb, (db * db).sum(1), m)
        return _cka_ratio(kl, kk, ll)


def _hsic_u(frob, d_dot, s_a, s_b, r_dot, m):
    """platonic-rep's unbiased HSIC from its four sums (Song et al. 2012, eq. 5):
    frob - d_dot = Σ K̃∘L̃, s = 1ᵀK̃1, r_dot = (K̃1)·(L̃1) = 1ᵀK̃L̃1."""
    return (frob - d_dot + s_a * s_b / ((m - 1) * (m - 2)) - 2.0 * r_dot / (m - 2)) / (m * (m - 3))


def _cka_ratio(kl, kk, ll):
    return kl / (torch.sqrt(kk[:, None] * ll[None, :]) + 1e-6)


def cka_scores(layers_a: Layers, layers_b: Layers, *, unbiased: bool = False, normalize: bool = True,
               max_workspace_bytes: int = DEFAULT_WORKSPACE, route: str = "auto") -> torch.Tensor:
    """Linear CKA (biased or unbiased HSIC) for every layer pair.

    Args:
        layers_a: La tensors `[N, D_a]`; layers_b: Lb tensors `[N, D_b]`.
        unbiased: platonic-rep's `unbiased_cka` (needs N >= 4) instead of `cka`.
        route: "auto", "gram" or "covariance" (both exact; see the module docstring).

    Returns:
        `[La, Lb]` float64: HSIC(K, L) / (sqrt(HSIC(K, K) HSIC(L, L)) + 1e-6).
    """
    if route not in ("auto", "gram", "covariance"):
        raise ValueError(f"route must be 'auto', 'gram' or 'covariance', got {route!r}")
    if unbiased and layer_count(layers_a)[0] < 4:
        raise ValueError(f"unbiased HSIC needs N >= 4 samples, got N={layer_count(layers_a)[0]}")
    return GramTerms(layers_a, layers_b, normalize=normalize, max_workspace_bytes=max_workspace_bytes,
                     route=route).cka(unbiased)


@full_precision_matmul()
def list_similarities(layers: Layers, idx: torch.Tensor, *, normalize: bool = True,
                      max_workspace_bytes: int = DEFAULT_WORKSPACE) -> torch.Tensor:
    """Similarities `[L, N, k]` (float64) of each row with its listed neighbours,
    <x̂_i, x̂_j> for j in idx[l, i] -- the only Gram entries CKNNA reads. Dots run in
    the features' precision (float32 or float64), like the kNN ranking itself, on
    scale-safe unit rows (one layer's copy at a time), so the result does not change
    with the features' scale. Without `normalize` the raw dots must be representable:
    a non-finite one raises, naming the layer."""
    L, n, k = idx.shape
    out = torch.empty(L, n, k, dtype=torch.float64)
    for l, x in enumerate(layers):
        chunk = _row_chunk(k * x.shape[1], int(max_workspace_bytes), min_rows=1)
        il = idx[l].to(x.device)
        dt = _gemm_dtype(x)
        xs = unit_rows(x, dt) if normalize else x.to(dt)
        for s in range(0, n, chunk):
            nb = xs[il[s:s + chunk]]  # [c, k, D]
            dots = torch.bmm(nb, xs[s:s + chunk].unsqueeze(2)).squeeze(2).to(torch.float64)
            out[l, s:s + chunk] = dots.cpu()
        if not normalize and not torch.isfinite(out[l]).all():
            raise ValueError(f"layer {l}: the dot products of the features overflow {dt} with "
                             "normalize=False; pass float64 features or use normalize=True")
    return out


def cknna_scores(layers_a: Layers, layers_b: Layers, idx_a: torch.Tensor, idx_b: torch.Tensor, *,
                 normalize: bool = True, backend: str = "auto",
                 max_workspace_bytes: int = DEFAULT_WORKSPACE) -> torch.Tensor:
    """platonic-rep's CKNNA for every layer pair, from the layers' kNN lists.

    Args:
        layers_a, layers_b: La / Lb tensors `[N, D_l]`.
        idx_a, idx_b: their neighbour lists `[La, N, k]`, `[Lb, N, k]` (k >= 2),
            computed with the same `normalize`.

    Returns:
        `[La, Lb]` float64: HSIC_u(M∘K, M∘L) / (sqrt(HSIC_u(M_K∘K, M_K∘K) HSIC_u(M_L∘L, M_L∘L)) + 1e-6)
        with M = M_K ∘ M_L the row-wise product of the k-neighbour masks.
    """
    a, b = _check_pair_lists(idx_a, idx_b)
    n, k = a.shape[1], a.shape[2]
    if k < 2:
        raise ValueError(f"cknna requires k >= 2, got k={k}")
    if n < 4:
        raise ValueError(f"cknna (unbiased HSIC) needs N >= 4 samples, got N={n}")
    ws = int(max_workspace_bytes)
    va = list_similarities(layers_a, a, normalize=normalize, max_workspace_bytes=ws)
    vb = list_similarities(layers_b, b, normalize=normalize, max_workspace_bytes=ws)
    be = _list_backend(backend, [idx_a, idx_b])
    La, Lb = a.shape[0], b.shape[0]
    m = float(n)

    def hsic(t):
        return (t[:, 0] + t[:, 1] * t[:, 2] / ((m - 1) * (m - 2)) - 2.0 * t[:, 3] / (m - 2)) / (m * (m - 3))

    kl = hsic(_cknna_terms(a, va, b, vb, [(i, j) for i in range(La) for j in range(Lb)], be)).view(La, Lb)
    kk = hsic(_cknna_terms(a, va, a, va, [(i, i) for i in range(La)], be))
    ll = hsic(_cknna_terms(b, vb, b, vb, [(j, j) for j in range(Lb)], be))
    return _cka_ratio(kl, kk, ll)


# ------------------------------------------------------------------- dispatch
def layer_lists(layers: Layers, k: int, *, normalize: bool = True, backend: str = "auto",
                max_workspace_bytes: int = DEFAULT_WORKSPACE) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` of `[N, D_l]` layers, one kNN search per layer.

    Layers are searched one at a time, on any device, so the extra memory is one
    layer's normalised copy, never a stacked copy of all layers.
    """
    kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
    return torch.stack([cosine_knn(t, k, **kw)[1] for t in layers])


def all_pair_scores(metrics: Sequence[str], layers_a: Layers, layers_b: Layers, k: int = 10, *,
                    normalize: bool = True, backend: str = "auto",
                    max_workspace_bytes: int = DEFAULT_WORKSPACE,
                    lists: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Score matrices `[La, Lb]` (float64, CPU) for several metrics, sharing the
    per-layer kNN lists (searched once, only if a metric needs them).

    Args:
        metrics: names from `METRICS`.
        layers_a, layers_b: lists of `[N, D_l]` tensors with the same N.
        k: neighbours for the kNN metrics and CKNNA.
        lists: precomputed `(idx_a [La, N, k], idx_b [Lb, N, k])` to reuse.
    """
    for m in metrics:
        check_metric(m)
    ws = int(max_workspace_bytes)
    need_lists = any(m in USES_K for m in metrics)
    if need_lists and lists is None:
        kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=ws)
        lists = (layer_lists(layers_a, k, **kw), layer_lists(layers_b, k, **kw))
    out: dict[str, torch.Tensor] = {}
    terms = None
    for m in metrics:
        if m in KNN_METRICS:
            out[m] = list_scores(m, lists[0], lists[1], backend=backend)
        elif m == "cknna":
            out[m] = cknna_scores(layers_a, layers_b, lists[0], lists[1], normalize=normalize,
                                  backend=backend, max_workspace_bytes=ws)
        else:
            if terms is None:  # one Gram pass serves both cka and unbiased_cka
                terms = GramTerms(layers_a, layers_b, normalize=normalize, max_workspace_bytes=ws)
            out[m] = terms.cka(unbiased=m == "unbiased_cka")
    return out


def chance_level(metric: str, n: int, k: int) -> float:
    """Expected score of unrelated features where a closed form exists: mutual kNN
    k / (N - 1) (two independent uniformly random k-subsets of the N - 1 others).
    NaN otherwise -- use the permutation null (`vtalign.probe.calibration`)."""
    check_metric(metric)
    if metric == "mutual_knn":
        n = check_int("n", n, lo=2)
        return check_int("k", k, lo=1, hi=n - 1) / (n - 1)
    return math.nan
