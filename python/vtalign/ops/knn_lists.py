"""Metrics over ordered kNN lists for every layer pair at once (docs/design.md §3.2):
`cycle_knn`, `lcs_knn`, `edit_distance_knn` (and `mutual_knn` via `knn_overlap`),
plus the CKNNA list sums. Checks and backend choice here; the C++ core
(`csrc/knn_lists.cpp`) does the work, with vectorised torch fallbacks. There is
no Triton twin: the lists are N·k integers, so CUDA lists are walked on the CPU.
"""
from __future__ import annotations

import os

import torch

from vtalign.ops._common import cpp, has_cpp, resolve_backend
from vtalign.ops.overlap import knn_overlap

KNN_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")
_KIND = {"cycle_knn": 0, "lcs_knn": 1, "edit_distance_knn": 2}


def _list_backend(backend: str | None, tensors: list[torch.Tensor]) -> str:
    """Backend for the index-list kernels. There is no Triton twin (the lists are N·k
    integers), so lists on any device are walked on the CPU: "triton" (asked for, by
    VTALIGN_BACKEND or by "auto" for CUDA lists) means the fastest CPU walk."""
    be = backend or "auto"
    if be == "auto":
        be = os.environ.get("VTALIGN_BACKEND", "auto") or "auto"
    if be in ("auto", "triton"):
        return "cpp" if has_cpp() else "torch"
    be = resolve_backend(be, [])  # the name is checked, the walk runs on the CPU
    return "cpp" if be == "cpp" else "torch"


def _check_pair_lists(idx_a: torch.Tensor, idx_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("idx_a", idx_a), ("idx_b", idx_b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3 or t.numel() == 0:
            raise ValueError(f"{name} must be non-empty [L, N, k] neighbour lists, got shape {tuple(t.shape)}")
        if t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must hold int32 or int64 indices, got {t.dtype}")
    if idx_a.shape[1:] != idx_b.shape[1:]:
        raise ValueError(f"idx_a and idx_b must agree on [N, k], got {tuple(idx_a.shape[1:])} and "
                         f"{tuple(idx_b.shape[1:])}")
    n = idx_a.shape[1]
    for name, t in (("idx_a", idx_a), ("idx_b", idx_b)):
        if bool((t < 0).any()) or bool((t >= n).any()):
            raise ValueError(f"{name} holds indices outside [0, N) = [0, {n})")
    return idx_a.cpu().to(torch.int64).contiguous(), idx_b.cpu().to(torch.int64).contiguous()


def _lcs_edit_torch(a: torch.Tensor, b: torch.Tensor, edit: bool) -> torch.Tensor:
    """Per-sample LCS length / Levenshtein distance of rows of a, b `[P, N, k]`, the
    DP vectorised over pairs and samples (the fallback when the C++ core is absent)."""
    P, N, k = a.shape
    eq = a[..., :, None] == b[..., None, :]
    base = torch.arange(k + 1, dtype=torch.int32)
    prev = (base if edit else torch.zeros_like(base)).expand(P, N, k + 1).clone()
    for i in range(1, k + 1):
        cur = torch.empty_like(prev)
        cur[..., 0] = i if edit else 0
        for j in range(1, k + 1):
            hit = eq[..., i - 1, j - 1]
            if edit:
                cur[..., j] = torch.minimum(prev[..., j - 1] + (~hit).int(),
                                            torch.minimum(prev[..., j], cur[..., j - 1]) + 1)
            else:
                cur[..., j] = torch.where(hit, prev[..., j - 1] + 1, torch.maximum(prev[..., j], cur[..., j - 1]))
        prev = cur
    return prev[..., k]


def _list_counts_torch(kind: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    La, N, k = a.shape
    Lb = b.shape[0]
    out = torch.empty(La, Lb, N, dtype=torch.int32)
    rows = torch.arange(N)
    for la in range(La):
        for lb in range(Lb):
            if kind == 0:
                hop = a[la][b[lb]]  # [N, k, k]: A-lists of each of i's B-neighbours
                out[la, lb] = (hop == rows[:, None, None]).flatten(1).any(1).int()
            else:
                out[la, lb] = _lcs_edit_torch(a[la:la + 1], b[lb:lb + 1], kind == 2)[0]
    return out


def list_scores(metric: str, idx_a: torch.Tensor, idx_b: torch.Tensor, *, reduce: str = "mean",
                backend: str = "auto") -> torch.Tensor:
    """A kNN-list metric for every layer pair from precomputed neighbour lists.

    Args:
        metric: one of `KNN_METRICS`.
        idx_a: `[La, N, k]` ordered neighbour lists (e.g. `cosine_knn(...)[1]`).
        idx_b: `[Lb, N, k]`, same N and k.
        reduce: "mean" -> `[La, Lb]` float64 scores; "none" -> `[La, Lb, N]`
            float64 per-sample scores whose mean over N is the score (overlap / k,
            the 0/1 cycle hit, LCS length, 1 - Levenshtein / k).
    """
    if metric not in KNN_METRICS:
        raise ValueError(f"metric must be one of {KNN_METRICS}, got {metric!r}")
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    if metric == "mutual_knn":
        out = knn_overlap(idx_a, idx_b, reduce=reduce, backend=backend)
        return out.cpu().to(torch.float64) if reduce == "mean" else \
            torch.round(out.cpu().to(torch.float64) * idx_a.shape[-1]) / idx_a.shape[-1]
    a, b = _check_pair_lists(idx_a, idx_b)
    kind, k, n = _KIND[metric], a.shape[2], a.shape[1]
    if _list_backend(backend, [idx_a, idx_b]) == "cpp":
        if reduce == "mean":  # integer totals straight from the kernel: no [La, Lb, N] array
            tot = torch.empty(a.shape[0], b.shape[0], dtype=torch.int64)
            cpp().list_scores(a.numpy(), b.numpy(), kind, tot.numpy(), True)
            mean = tot.to(torch.float64) / n
            return 1.0 - mean / k if metric == "edit_distance_knn" else mean
        per = torch.empty(a.shape[0], b.shape[0], n, dtype=torch.int32)
        cpp().list_scores(a.numpy(), b.numpy(), kind, per.numpy(), False)
    else:
        per = _list_counts_torch(kind, a, b)
    per = per.to(torch.float64)
    if metric == "edit_distance_knn":
        per = 1.0 - per / k
    return per.mean(-1) if reduce == "mean" else per


def _cknna_terms_torch(a, va, b, vb, pairs):
    N = a.shape[1]
    rows = torch.arange(N)
    out = torch.empty(len(pairs), 4, dtype=torch.float64)
    for p, (la, lb) in enumerate(pairs):
        A, B, KA, KB = a[la], b[lb], va[la], vb[lb]
        eq = A[:, :, None] == B[:, None, :]  # [N, k(A), k(B)]
        inm = eq.any(2)
        lij = KB.gather(1, eq.int().argmax(2)) * inm
        kij = KA * inm
        col = torch.zeros(N, dtype=torch.float64).index_add_(0, A.flatten(), kij.flatten())
        back = (A[A] == rows[:, None, None]).any(2) & (B[A] == rows[:, None, None]).any(2)
        out[p, 0] = (kij * lij * back).sum()
        out[p, 1] = kij.sum()
        out[p, 2] = lij.sum()
        out[p, 3] = (col * lij.sum(1)).sum()
    return out


def _cknna_terms(a, va, b, vb, pairs: list[tuple[int, int]], be: str) -> torch.Tensor:
    if be == "cpp":
        out = torch.empty(len(pairs), 4, dtype=torch.float64)
        cpp().cknna_terms(a.numpy(), va.contiguous().numpy(), b.numpy(), vb.contiguous().numpy(),
                          torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2).numpy(), out.numpy())
        return out
    return _cknna_terms_torch(a, va, b, vb, pairs)
