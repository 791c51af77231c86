"""Score matrices of permuted sample correspondences for every metric: the
permutation null behind the calibrated scores (`vtalign.probe.aristotelian`).

Permutation π replaces B by B[π] in every layer of B at once. What each family
needs per permutation, with everything that π leaves unchanged done once:

- kNN-list metrics: the lists of B[π] are B's lists re-indexed
  (`permute_lists`), so one list pass scores all La x Lb pairs;
- CKA / unbiased CKA: the self terms HSIC(K, K), HSIC(L, L) are invariant
  (both kernels permuted together), and on centred features only the cross
  term changes. Write K, L for the centred Grams X̃X̃ᵀ, ỸỸᵀ, d_K, d_L for their
  diagonals and L_π[i, j] = L[π(i), π(j)]. Then
      off_π = Σ_{i≠j} K[i, j] L_π[i, j]      (twice the upper-triangle sum)
      biased:   HSIC_b = trace(K H L_π H) = <K, L_π> = off_π + d_K · d_L[π]
      unbiased (Song et al. 2012, eq. 5, with K̃ = K - diag(d_K), K1 = 0, so
      1ᵀK̃1 = -Σd_K and K̃1 = -d_K):
          HSIC_u = (off_π + Σd_K Σd_L / ((N-1)(N-2)) - 2 d_K · d_L[π] / (N-2)) / (N(N-3))
  (HSIC_u is unchanged by translating the features, so centring is free.)
  Two exact routes for off_π, whichever costs fewer flops:
  * Gram route (N small next to D): the upper triangles of every Gram are built
    once; per permutation B's are gathered at (π(i), π(j)) and one GEMM
    [La, M] x [M, Lb] (M = N(N-1)/2) contracts all pairs: no features touched;
  * covariance route (large N): <K, L_π> = ||X̃ᵀ Ỹ[π]||², one GEMM per
    permutation of A's layers stacked [N, ΣD_a] against B's stacked and
    permuted [N, ΣD_b], then a sum of squares per block.
- CKNNA: B[π]'s lists are permuted as above and their similarities are B's
  listed similarities with rows permuted (vb[:, π]); one `cknna_terms` pass per
  permutation scores every pair, the self terms once.

Ties: B[π]'s own kNN search breaks ties by its permuted indices; the
re-indexed lists keep B's order, so on data with exact ties in a list the two
can differ (on continuous features they agree).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vtalign.ops import unit_rows
from vtalign.probe.calibration import permute_lists
from vtalign.probe.metrics import (
    DEFAULT_WORKSPACE,
    KNN_METRICS,
    _cka_ratio,
    _cknna_terms,
    _list_backend,
    full_precision_matmul,
    list_scores,
    list_similarities,
)

Layers = Sequence[torch.Tensor]
PermFn = Callable[[int, torch.device], torch.Tensor]


def draw_permutations(n: int, count: int, *, generator: torch.Generator | None = None,
                      device: str | torch.device = "cpu", perm_fn: PermFn | None = None) -> torch.Tensor:
    """`[count, n]` int64 permutations (CPU), row p the p-th draw of
    `torch.randperm(n, device=device, generator=generator)` -- the same calls, in
    the same order, as calibrated-similarity makes, so one generator state gives
    the same permutations there and here. `perm_fn(n, device)` replaces the draw
    (restricted designs, e.g. block permutations); each result must permute range(n)."""
    out = torch.empty(count, n, dtype=torch.int64)
    ref = torch.arange(n)
    for p in range(count):
        perm = perm_fn(n, torch.device(device)) if perm_fn is not None else \
            torch.randperm(n, device=device, generator=generator)
        perm = torch.as_tensor(perm).to("cpu", torch.int64)
        if perm.shape != (n,) or not torch.equal(perm.sort().values, ref):
            raise ValueError(f"perm_fn must return a permutation of range({n}) (a LongTensor [{n}]), "
                             f"got shape {tuple(perm.shape)} at draw {p}")
        out[p] = perm
    return out


def knn_null(idx_a: torch.Tensor, idx_b: torch.Tensor, metric: str, perms: torch.Tensor, *,
             backend: str = "auto") -> torch.Tensor:
    """`[P, La, Lb]` float64 kNN-list scores of A against B[π] for each row π of
    `perms` `[P, N]`, from the lists `idx_a [La, N, k]`, `idx_b [Lb, N, k]` (no new search)."""
    if metric not in KNN_METRICS:
        raise ValueError(f"metric must be one of {KNN_METRICS}, got {metric!r}")
    ib = idx_b.to(idx_a.device, torch.int64)
    return torch.stack([list_scores(metric, idx_a, permute_lists(ib, p.to(idx_a.device)), backend=backend)
                        for p in perms])


def _centred(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Float64 rows (unit rows when `normalize`: invariant to the features' scale) minus their mean."""
    u = unit_rows(x, torch.float64) if normalize else x.to(torch.float64)
    return u - u.mean(0)


def _gemm_dtype(layers: Layers) -> torch.dtype:
    return torch.float64 if all(x.dtype == torch.float64 for x in layers) else torch.float32


class GramNull:
    """CKA and unbiased CKA of A against B[π] for many π, all La x Lb pairs.

    Args:
        layers_a, layers_b: La / Lb tensors `[N, D_l]` (same N, N >= 4).
        normalize: L2-normalise rows first (vtalign's default); False measures the
            features as given (platonic-rep's `AlignmentMetrics`).
        route: "auto", "gram" or "covariance" (both exact; see the module docstring).
        max_workspace_bytes: bounds the per-chunk temporaries; the Gram route also
            needs the Grams themselves, (La·N(N-1)/2 + Lb·N²) entries.

    Products run in float32 for float32 features (float64 for float64 ones), on
    centred data so nothing large cancels; every HSIC term is float64.
    """

    @full_precision_matmul()  # the Gram sums are differenced: no TF32 here
    def __init__(self, layers_a: Layers, layers_b: Layers, *, normalize: bool = True, route: str = "auto",
                 max_workspace_bytes: int = DEFAULT_WORKSPACE):
        if route not in ("auto", "gram", "covariance"):
            raise ValueError(f"route must be 'auto', 'gram' or 'covariance', got {route!r}")
        xa = [_centred(x, normalize) for x in layers_a]
        xb = [_centred(x, normalize) for x in layers_b]
        self.n = n = xa[0].shape[0]
        if n < 4:
            raise ValueError(f"the CKA null needs N >= 4 samples, got N={n}")
        self.ws = int(max_workspace_bytes)
        self.dtype = _gemm_dtype(list(layers_a) + list(layers_b))
        self.diag_a = torch.stack([(x * x).sum(1) for x in xa])  # [La, N] float64
        self.diag_b = torch.stack([(x * x).sum(1) for x in xb])
        la, lb = len(xa), len(xb)
        da, db = sum(x.shape[1] for x in xa), sum(x.shape[1] for x in xb)
        m = n * (n - 1) // 2
        gram_flops = m * lb * (2 * la + 4)  # GEMM plus the gather, per permutation
        cov_flops = 2 * n * da * db + n * db
        gram_bytes = (la * m + lb * n * n) * torch.finfo(self.dtype).bits // 8
        if route == "auto":
            route = "gram" if gram_flops < cov_flops and gram_bytes <= max(1 << 30, 8 * self.ws) else "covariance"
        self.route = route
        dt = self.dtype
        if route == "gram":
            self.iu, self.ju = torch.triu_indices(n, n, 1, device=xa[0].device)
            ga = [x.to(dt) @ x.to(dt).T for x in xa]
            gb = [x.to(dt) @ x.to(dt).T for x in xb]
            self.up_a = torch.stack([g[self.iu, self.ju] for g in ga])  # [La, M]
            self.gram_b = torch.stack([g.flatten() for g in gb])  # [Lb, N²]
            # <K, K> = 2 Σ_{i<j} K[i, j]² + Σ d_K²
            self.self_a = 2.0 * self.up_a.to(torch.float64).square().sum(1) + self.diag_a.square().sum(1)
            self.self_b = torch.stack([2.0 * g[self.iu, self.ju].to(torch.float64).square().sum() for g in gb]) \
                + self.diag_b.square().sum(1)
        else:
            self.sa = torch.cat(xa, 1).to(dt)  # [N, ΣD_a]
            self.sb = torch.cat(xb, 1).to(dt)  # [N, ΣD_b]
            # <K, K> = ||X̃ᵀX̃||² (D x D per layer, once)
            self.self_a = torch.stack([(x.to(dt).T @ x.to(dt)).to(torch.float64).square().sum() for x in xa])
            self.self_b = torch.stack([(x.to(dt).T @ x.to(dt)).to(torch.float64).square().sum() for x in xb])
            self.cuts_a = torch.tensor([0] + [x.shape[1] for x in xa]).cumsum(0)
            self.cuts_b = torch.tensor([0] + [x.shape[1] for x in xb]).cumsum(0)

    def _diag_dot(self, perms: torch.Tensor) -> torch.Tensor:
        """`[P, La, Lb]` float64 d_K · d_L[π] for every pair and permutation."""
        return torch.einsum("an,pbn->pab", self.diag_a, self.diag_b[:, perms].permute(1, 0, 2))

    def _off_diagonal(self, perms: torch.Tensor, dd: torch.Tensor) -> torch.Tensor:
        """`[P, La, Lb]` float64 Σ_{i≠j} K_a[i, j] L_b[π(i), π(j)]."""
        P, n = perms.shape[0], self.n
        la, lb = self.diag_a.shape[0], self.diag_b.shape[0]
        out = torch.empty(P, la, lb, dtype=torch.float64, device=perms.device)
        item = torch.finfo(self.dtype).bits // 8
        if self.route == "gram":
            m = self.iu.numel()
            step = max(1, self.ws // max(1, lb * m * item + m * 8))
            for s in range(0, P, step):
                pc = perms[s:s + step]
                flat = pc[:, self.iu] * n + pc[:, self.ju]  # [c, M] positions in L's flattened Gram
                g = self.gram_b.index_select(1, flat.flatten()).view(lb * pc.shape[0], m)  # [Lb*c, M]
                prod = (self.up_a @ g.T).to(torch.float64).view(la, lb, pc.shape[0])
                out[s:s + pc.shape[0]] = 2.0 * prod.permute(2, 0, 1)
            return out
        for p in range(P):
            sq = (self.sa.T @ self.sb[perms[p]]).to(torch.float64).square()  # [ΣD_a, ΣD_b]
            rows = torch.stack([sq[self.cuts_a[i]:self.cuts_a[i + 1]].sum(0) for i in range(la)])
            out[p] = torch.stack([rows[:, self.cuts_b[j]:self.cuts_b[j + 1]].sum(1) for j in range(lb)], 1)
        # the GEMM gives all of <K, L_π>; the diagonal part is known exactly
        return out - dd

    @full_precision_matmul()
    def scores(self, perms: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
        """`[P, La, Lb]` float64 (unbiased) CKA of A against B[π] for each row π of
        `perms` `[P, N]`, platonic-rep's HSIC(K, L) / (sqrt(HSIC(K, K) HSIC(L, L)) + 1e-6)."""
        perms = perms.to(self.diag_a.device, torch.int64)
        dd = self._diag_dot(perms)
        off = self._off_diagonal(perms, dd)
        da, db = self.diag_a, self.diag_b
        if not unbiased:
            return _cka_ratio_batched(off + dd, self.self_a, self.self_b).cpu()
        m = float(self.n)
        sa, sb = da.sum(1), db.sum(1)

        def hsic_u(off_, s_a, s_b, d_dot):
            return (off_ + s_a * s_b / ((m - 1) * (m - 2)) - 2.0 * d_dot / (m - 2)) / (m * (m - 3))

        kl = hsic_u(off, sa[:, None], sb[None, :], dd)
        # self terms: off-diagonal <K, K> minus the diagonal part, π = identity
        kk = hsic_u(self.self_a - (da * da).sum(1), sa, sa, (da * da).sum(1))
        ll = hsic_u(self.self_b - (db * db).sum(1), sb, sb, (db * db).sum(1))
        return _cka_ratio_batched(kl, kk, ll).cpu()


def _cka_ratio_batched(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
    return torch.stack([_cka_ratio(x, kk, ll) for x in kl])


class CknnaNull:
    """CKNNA of A against B[π] for many π, from the kNN lists (k >= 2, N >= 4) and
    their listed similarities; the self terms are computed once."""

    def __init__(self, layers_a: Layers, layers_b: Layers, idx_a: torch.Tensor, idx_b: torch.Tensor, *,
                 normalize: bool = True, backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE):
        self.a = idx_a.cpu().to(torch.int64).contiguous()
        self.b = idx_b.cpu().to(torch.int64).contiguous()
        n, k = self.a.shape[1], self.a.shape[2]
        if k < 2 or n < 4:
            raise ValueError(f"cknna needs k >= 2 and N >= 4, got k={k}, N={n}")
        ws = int(max_workspace_bytes)
        self.va = list_similarities(layers_a, self.a, normalize=normalize, max_workspace_bytes=ws)
        self.vb = list_similarities(layers_b, self.b, normalize=normalize, max_workspace_bytes=ws)
        self.be = _list_backend(backend, [self.a, self.b])
        self.m = float(n)
        la, lb = self.a.shape[0], self.b.shape[0]
        self.pairs = [(i, j) for i in range(la) for j in range(lb)]
        self.kk = self._hsic(_cknna_terms(self.a, self.va, self.a, self.va, [(i, i) for i in range(la)], self.be))
        self.ll = self._hsic(_cknna_terms(self.b, self.vb, self.b, self.vb, [(j, j) for j in range(lb)], self.be))

    def _hsic(self, t: torch.Tensor) -> torch.Tensor:
        m = self.m
        return (t[:, 0] + t[:, 1] * t[:, 2] / ((m - 1) * (m - 2)) - 2.0 * t[:, 3] / (m - 2)) / (m * (m - 3))

    def scores(self, perms: torch.Tensor) -> torch.Tensor:
        """`[P, La, Lb]` float64 CKNNA of A against B[π] for each row π of `perms` `[P, N]`."""
        la, lb = self.a.shape[0], self.b.shape[0]
        out = []
        for p in perms.to("cpu", torch.int64):
            b = permute_lists(self.b, p).contiguous()
            vb = self.vb[:, p].contiguous()
            kl = self._hsic(_cknna_terms(self.a, self.va, b, vb, self.pairs, self.be)).view(la, lb)
            out.append(_cka_ratio(kl, self.kk, self.ll))
        return torch.stack(out)


__all__ = ["CknnaNull", "GramNull", "draw_permutations", "knn_null"]
