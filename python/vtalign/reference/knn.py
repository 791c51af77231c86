"""Float64 oracle for cosine kNN and neighbour overlap (docs/design.md §3.1–3.2).

Readable and dense on purpose: it builds the full N x N similarity matrix,
which the real backends never do.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import unit_rows


def knn(queries: torch.Tensor, keys: torch.Tensor, k: int, *, normalize: bool = True,
        self_shift: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys per query. queries [L, M, D], keys [L, N, D] -> ([L, M, k], [L, M, k]).

    Ties go to the lower key index (stable descending sort). With self_shift >= 0
    the key with index `query + self_shift` is excluded.
    """
    q = queries.double()
    kk = keys.double()
    if normalize:
        q, kk = unit_rows(q), unit_rows(kk)
    sim = q @ kk.transpose(-1, -2)
    # A GEMM need not give identical key rows bit-identical similarities (they sit at
    # different offsets in its blocking), which would break their tie the wrong way:
    # every duplicated key takes the similarity of its first copy.
    for layer in range(kk.shape[0]):
        _, inverse = torch.unique(kk[layer], dim=0, return_inverse=True)
        # on the inputs' device: the GPU tests run this oracle there, where it is dense and quick
        first = torch.full((int(inverse.max()) + 1,), kk.shape[1], dtype=torch.int64, device=kk.device)
        first = first.scatter_reduce(0, inverse, torch.arange(kk.shape[1], device=kk.device), reduce="amin")
        sim[layer] = sim[layer][:, first[inverse]]
    if self_shift >= 0:
        m, n = sim.shape[-2:]
        rows = torch.arange(m, device=sim.device)
        cols = rows + self_shift
        ok = cols < n
        sim[..., rows[ok], cols[ok]] = float("-inf")
    vals, idx = torch.sort(sim, dim=-1, descending=True, stable=True)
    return vals[..., :k], idx[..., :k]


def cosine_knn(x: torch.Tensor, k: int, *, exclude_self: bool = True,
               normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """x [L, N, D] or [N, D] -> (values, indices) [..., N, k]."""
    squeeze = x.dim() == 2
    xx = x.unsqueeze(0) if squeeze else x
    v, i = knn(xx, xx, k, normalize=normalize, self_shift=0 if exclude_self else -1)
    return (v[0], i[0]) if squeeze else (v, i)


def knn_overlap(idx_a: torch.Tensor, idx_b: torch.Tensor, *, reduce: str = "mean") -> torch.Tensor:
    """[La, N, k] x [Lb, N, k] -> [La, Lb] mean overlap / k, or [La, Lb, N] per sample."""
    la, n, k = idx_a.shape
    lb = idx_b.shape[0]
    out = torch.empty(la, lb, n, dtype=torch.float64)
    for a in range(la):
        for b in range(lb):
            for i in range(n):
                sa = set(idx_a[a, i].tolist())
                sb = set(idx_b[b, i].tolist())
                out[a, b, i] = len(sa & sb) / k
    return out.mean(-1) if reduce == "mean" else out


def mutual_knn(feats_a: torch.Tensor, feats_b: torch.Tensor, k: int = 10) -> float:
    """Huh et al.'s mutual kNN for one pair of [N, D] feature sets, by dense masks."""
    n = feats_a.shape[0]
    _, ia = cosine_knn(feats_a, k)
    _, ib = cosine_knn(feats_b, k)
    ma = torch.zeros(n, n, dtype=torch.float64)
    mb = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n).unsqueeze(1)
    ma[rows, ia] = 1.0
    mb[rows, ib] = 1.0
    return float(((ma * mb).sum(1) / k).mean())
