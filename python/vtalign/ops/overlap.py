"""Neighbour overlap across all layer pairs and mutual kNN (docs/design.md §3.2).

The kNN graph of each layer is computed once (La + Lb searches) and the
overlap of every (la, lb) pair comes from one launch over the index lists;
nothing is recomputed per pair.
"""
from __future__ import annotations

import torch

from vtalign.ops._common import check_int, check_tensor, cpp, eager_op, resolve_backend
from vtalign.ops.knn import DEFAULT_WORKSPACE, named_cosine_knn
from vtalign.reference import knn as ref

_INT_DTYPES = (torch.int32, torch.int64)


def _torch_counts(a: torch.Tensor, b: torch.Tensor, reduce: bool) -> torch.Tensor:
    La, N, k = a.shape
    Lb = b.shape[0]
    chunk = max(1, (1 << 24) // max(1, La * Lb * k * k))
    parts = []
    for s in range(0, N, chunk):
        aa = a[:, None, s:s + chunk, :, None]
        bb = b[None, :, s:s + chunk, None, :]
        parts.append((aa == bb).sum((-1, -2), dtype=torch.int32))
    per = torch.cat(parts, -1)
    return per.sum(-1, dtype=torch.int64) if reduce else per


def _overlap_impl(idx_a: torch.Tensor, idx_b: torch.Tensor, reduce: bool, backend: str) -> torch.Tensor:
    if backend == "triton":
        from vtalign.kernels import overlap as tk
        return tk.overlap_counts(idx_a, idx_b, reduce=reduce)
    if backend == "cpp":
        La, N, _ = idx_a.shape
        Lb = idx_b.shape[0]
        out = torch.zeros((La, Lb) if reduce else (La, Lb, N),
                          dtype=torch.int64 if reduce else torch.int32)
        cpp().overlap_counts(idx_a.to(torch.int64).contiguous().numpy(),
                             idx_b.to(torch.int64).contiguous().numpy(), out.numpy(), reduce)
        return out
    if backend == "reference":
        k = idx_a.shape[-1]
        per = torch.round(ref.knn_overlap(idx_a, idx_b, reduce="none") * k).to(torch.int32)
        return per.sum(-1, dtype=torch.int64) if reduce else per
    return _torch_counts(idx_a.to(torch.int64), idx_b.to(torch.int64), reduce)


_overlap_op = torch.library.custom_op("vtalign::knn_overlap_counts", mutates_args=())(_overlap_impl)
_overlap = eager_op(_overlap_op, _overlap_impl)


@_overlap_op.register_fake
def _(idx_a, idx_b, reduce, backend):
    La, N, _ = idx_a.shape
    Lb = idx_b.shape[0]
    if reduce:
        return idx_a.new_empty((La, Lb), dtype=torch.int64)
    return idx_a.new_empty((La, Lb, N), dtype=torch.int32)


def _check_lists(name: str, idx: torch.Tensor, n_keys: int | None) -> torch.Tensor:
    check_tensor(name, idx, ndims=(2, 3), floating=False)
    if idx.dtype not in _INT_DTYPES:
        raise TypeError(f"{name} must be int32 or int64 neighbour indices, got {idx.dtype}")
    idx = idx.unsqueeze(0) if idx.dim() == 2 else idx
    if bool((idx < 0).any()):
        raise ValueError(f"{name} contains negative indices")
    n = idx.shape[1] if n_keys is None else n_keys
    if bool((idx >= n).any()):
        what = "N, the samples the lists index" if n_keys is None else "n_keys"
        raise ValueError(f"{name} holds an index >= {n} ({what}); lists from knn(queries, keys) "
                         "with more keys than queries need n_keys=len(keys)")
    srt = idx.sort(-1).values
    if bool((srt[..., 1:] == srt[..., :-1]).any()):
        raise ValueError(f"{name} has a row with a repeated index; neighbour lists must be distinct")
    return idx


def knn_overlap(idx_a: torch.Tensor, idx_b: torch.Tensor, *, reduce: str = "mean",
                backend: str = "auto", n_keys: int | None = None) -> torch.Tensor:
    """Mean neighbour overlap |N_A(i) ∩ N_B(i)| / k for every pair of layers.

    Args:
        idx_a: neighbour lists `[La, N, k]` (or `[N, k]`), e.g. from `cosine_knn`.
        idx_b: neighbour lists `[Lb, N, k]` (or `[N, k]`), same N and k.
        reduce: "mean" -> `[La, Lb]` float64; "none" -> per sample `[La, Lb, N]` float32.
        n_keys: the size of the set the lists index; default N (lists over the samples
            themselves, as `cosine_knn` returns). Every index must lie in [0, n_keys).

    Returns:
        The overlap matrix; entry (la, lb) is platonic-rep's mutual_knn of that pair.
    """
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    n_keys = None if n_keys is None else check_int("n_keys", n_keys, lo=1)
    a = _check_lists("idx_a", idx_a, n_keys)
    b = _check_lists("idx_b", idx_b, n_keys)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"idx_a and idx_b must agree on [N, k], got {tuple(a.shape[1:])} and "
                         f"{tuple(b.shape[1:])} (different sample counts or k)")
    if a.device != b.device:
        raise ValueError(f"idx_a and idx_b must be on one device, got {a.device} and {b.device}")
    be = resolve_backend(backend, [a, b])
    n, k = a.shape[1], a.shape[2]
    counts = _overlap(a, b, reduce == "mean", be)
    if reduce == "mean":
        return counts.to(torch.float64) / (n * k)
    return counts.to(torch.float32) / k


def mutual_knn(feats_a: torch.Tensor, feats_b: torch.Tensor, k: int = 10, *, normalize: bool = True,
               backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE) -> float:
    """Huh et al.'s mutual k-nearest-neighbour alignment of one pair `[N, Da]`, `[N, Db]`.

    `(1/N) Σ_i |N_A(i) ∩ N_B(i)| / k` with self excluded; equal to platonic-rep's
    `AlignmentMetrics.mutual_knn` on L2-normalised features. Chance ≈ k/(N-1).
    """
    check_tensor("feats_a", feats_a, ndims=(2,))
    check_tensor("feats_b", feats_b, ndims=(2,))
    if feats_a.shape[0] != feats_b.shape[0]:
        raise ValueError(f"feats_a and feats_b must have the same number of samples N, got "
                         f"{feats_a.shape[0]} and {feats_b.shape[0]}")
    kw = dict(backend=backend, max_workspace_bytes=max_workspace_bytes, normalize=normalize)
    _, ia = named_cosine_knn("feats_a", feats_a, k, **kw)
    _, ib = named_cosine_knn("feats_b", feats_b, k, **kw)
    return float(knn_overlap(ia, ib, backend=backend)[0, 0])
