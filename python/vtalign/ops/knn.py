"""Batched cosine kNN (docs/design.md §3.1): checks, backend choice, torch.library ops.

CPU: torch computes similarity tiles with BLAS and the C++ core folds each tile
into a running top-k, so memory stays O(L·N·k) plus one tile
(`max_workspace_bytes`). A self-search uses each off-diagonal tile twice (rows
and columns), halving the GEMM work. GPU: kernels/knn.py.
"""
from __future__ import annotations

import math

import torch

from vtalign.ops._common import (
    check_finite,
    check_int,
    check_precision,
    check_tensor,
    cpp,
    eager_op,
    resolve_backend,
    triton_dtype_gap,
    unit_rows,
)
from vtalign.reference import knn as ref

DEFAULT_WORKSPACE = 32 << 20  # one similarity tile: 2896 x 2896 float32
_WORST_INDEX = torch.iinfo(torch.int64).max


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _tile_side(n_rows: int, itemsize: int, workspace: int) -> int:
    side = max(64, int(math.isqrt(max(workspace, 1) // itemsize)))
    return min(side, n_rows)


def _empty_state(L: int, M: int, k: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    vals = torch.full((L, M, k), float("-inf"), dtype=dtype, device=device)
    idx = torch.full((L, M, k), _WORST_INDEX, dtype=torch.int64, device=device)
    return vals, idx


# --------------------------------------------------------------------------- C++
def _cpp_self(x: torch.Tensor, k: int, exclude: bool, workspace: int):
    C = cpp()
    L, N, _ = x.shape
    vals, idx = _empty_state(L, N, k, x.dtype, x.device)
    side = _tile_side(N, x.element_size(), workspace)
    buf = torch.empty(side * side, dtype=x.dtype)
    shift = 0 if exclude else -1
    for l in range(L):
        xl = x[l]
        for i0 in range(0, N, side):
            qi = xl[i0:i0 + side]
            for j0 in range(i0, N, side):
                kj = xl[j0:j0 + side]
                tile = buf[: qi.shape[0] * kj.shape[0]].view(qi.shape[0], kj.shape[0])
                torch.mm(qi, kj.T, out=tile)
                t = tile.numpy()
                C.topk_rows(t, i0, j0, vals[l, i0:i0 + side].numpy(), idx[l, i0:i0 + side].numpy(), shift)
                if j0 != i0:  # the same tile, read by columns, serves the key rows
                    C.topk_cols(t, i0, j0, vals[l, j0:j0 + side].numpy(), idx[l, j0:j0 + side].numpy(), shift)
    return vals, idx


def _cpp_qk(q: torch.Tensor, keys: torch.Tensor, k: int, self_shift: int, workspace: int):
    C = cpp()
    L, M, _ = q.shape
    N = keys.shape[1]
    vals, idx = _empty_state(L, M, k, q.dtype, q.device)
    side = _tile_side(max(M, N), q.element_size(), workspace)
    bm, bn = min(side, M), min(side, N)
    if bm < side:  # few queries: spend the workspace on wider key tiles
        bn = min(N, max(bn, (side * side) // bm))
    buf = torch.empty(bm * bn, dtype=q.dtype)
    for l in range(L):
        for i0 in range(0, M, bm):
            qi = q[l, i0:i0 + bm]
            for j0 in range(0, N, bn):
                kj = keys[l, j0:j0 + bn]
                tile = buf[: qi.shape[0] * kj.shape[0]].view(qi.shape[0], kj.shape[0])
                torch.mm(qi, kj.T, out=tile)
                C.topk_rows(tile.numpy(), i0, j0, vals[l, i0:i0 + bm].numpy(),
                            idx[l, i0:i0 + bm].numpy(), self_shift)
    return vals, idx


# ------------------------------------------------------------------------- torch
def merge_topk(v: torch.Tensor, i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of candidate lists `[..., m]` under (value desc, index asc), exactly."""
    order = torch.argsort(i, dim=-1, stable=True)
    v, i = v.gather(-1, order), i.gather(-1, order)
    order = torch.argsort(v, dim=-1, descending=True, stable=True)
    return v.gather(-1, order)[..., :k], i.gather(-1, order)[..., :k]


def _torch_qk(q: torch.Tensor, keys: torch.Tensor, k: int, self_shift: int, workspace: int):
    """Any device, any float dtype: chunked GEMM + torch.topk, ties fixed up exactly."""
    L, M, _ = q.shape
    N = keys.shape[1]
    vals, idx = _empty_state(L, M, k, q.dtype, q.device)
    side = _tile_side(max(M, N), q.element_size(), workspace)
    bm, bn = min(side, M), min(side, N)
    for l in range(L):
        for i0 in range(0, M, bm):
            qi = q[l, i0:i0 + bm]
            rv, ri = vals[l, i0:i0 + bm], idx[l, i0:i0 + bm]
            rows = torch.arange(i0, i0 + qi.shape[0], device=q.device)
            for j0 in range(0, N, bn):
                tile = qi @ keys[l, j0:j0 + bn].T
                cols = torch.arange(j0, j0 + tile.shape[1], device=q.device)
                if self_shift >= 0:
                    tile = tile.masked_fill(cols[None, :] == rows[:, None] + self_shift, float("-inf"))
                kk = min(k, tile.shape[1])
                tv, ti = torch.topk(tile, kk, dim=1)
                # topk may pick any of several equal values at the boundary; redo
                # those (rare) rows with a stable sort so the lower index wins.
                tied = (tile >= tv[:, -1:]).sum(1) > kk
                if bool(tied.any()):
                    sv, si = torch.sort(tile[tied], dim=1, descending=True, stable=True)
                    tv[tied], ti[tied] = sv[:, :kk], si[:, :kk]
                ti = ti + j0
                ti = ti.masked_fill(torch.isinf(tv) & (tv < 0), _WORST_INDEX)
                mv, mi = merge_topk(torch.cat([rv, tv], 1), torch.cat([ri, ti], 1), k)
                rv.copy_(mv)
                ri.copy_(mi)
    return vals, idx


# ----------------------------------------------------------------------- dispatch
def _run_knn(q, keys, k, self_shift, symmetric, backend, workspace, precision):
    if backend == "reference":
        return ref.knn(q, keys, k, normalize=False, self_shift=self_shift)
    if backend == "triton":
        from vtalign.kernels import knn as tk
        return tk.knn(q, keys, k, self_shift=self_shift, precision=precision)
    work = q.to(_compute_dtype(q))
    wkeys = keys.to(work.dtype)
    if backend == "cpp":
        work = work.contiguous()
        if symmetric:
            return _cpp_self(work, k, self_shift >= 0, workspace)
        return _cpp_qk(work, wkeys.contiguous(), k, self_shift, workspace)
    return _torch_qk(work, wkeys, k, self_shift, workspace)


def _knn_impl(queries: torch.Tensor, keys: torch.Tensor, k: int, self_shift: int, symmetric: bool,
            backend: str, workspace: int, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    vals, idx = _run_knn(queries, keys, k, self_shift, symmetric, backend, workspace, precision)
    return vals.contiguous(), idx.contiguous()


_knn_op = torch.library.custom_op("vtalign::knn", mutates_args=())(_knn_impl)
_knn = eager_op(_knn_op, _knn_impl)


@_knn_op.register_fake
def _(queries, keys, k, self_shift, symmetric, backend, workspace, precision):
    L, M, _ = queries.shape
    vdt = torch.float64 if (queries.dtype == torch.float64 and backend != "triton") or backend == "reference" \
        else torch.float32
    return (queries.new_empty((L, M, k), dtype=vdt), queries.new_empty((L, M, k), dtype=torch.int64))


# ------------------------------------------------------------------------ public
def _as_layers(name: str, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    check_tensor(name, x, ndims=(2, 3))
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


def _check_options(workspace, precision) -> int:
    check_precision(precision)
    return check_int("max_workspace_bytes", workspace, lo=1)


def _check_k(k, n_candidates: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1 or k > n_candidates:
        raise ValueError(f"k must be in [1, {n_candidates}] ({what}), got k={k}")


# the Triton kernel keeps a row's best keys in registers, padded to a power of two
# (kernels/knn.py MAX_K; a test holds the two equal)
TRITON_MAX_K = 128


def _triton_gap(x: torch.Tensor, k: int) -> tuple[type[Exception], str] | None:
    gap = triton_dtype_gap(x)
    if gap is None and k > TRITON_MAX_K:
        gap = ValueError, f"supports k <= {TRITON_MAX_K}, got k={k}"
    return gap


def cosine_knn(x: torch.Tensor, k: int, *, exclude_self: bool = True, backend: str = "auto",
               max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3",
               normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of every row by cosine similarity, per layer.

    Args:
        x: features `[N, D]` or layer-major `[L, N, D]`.
        k: neighbours per row, 1 <= k <= N-1 (N when `exclude_self=False`).
        exclude_self: drop each row from its own list.
        backend: "auto", "triton", "cpp", "torch" or "reference".
        max_workspace_bytes: CPU tile budget; no N x N matrix is ever built.
        precision: Triton dot precision for float32 ("tf32x3", "tf32", "ieee").
        normalize: L2-normalise rows (cosine); False ranks by raw inner product.

    Returns:
        `(values, indices)` of shape `[N, k]` or `[L, N, k]`, sorted by descending
        similarity, ties to the lower index. Values are float32 (float64 for
        float64 input on the CPU, and on the reference backend); indices int64.
    """
    return named_cosine_knn("x", x, k, exclude_self=exclude_self, backend=backend,
                            max_workspace_bytes=max_workspace_bytes, precision=precision, normalize=normalize)


def named_cosine_knn(name: str, x: torch.Tensor, k: int, *, exclude_self: bool = True, backend: str = "auto",
                     max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3",
                     normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`cosine_knn` with its input called `name` in error messages (callers that take
    several feature tensors name the one at fault)."""
    xx, squeeze = _as_layers(name, x)
    n = xx.shape[1]
    _check_k(k, n - 1 if exclude_self else n, "exclude_self=True leaves N-1 candidates" if exclude_self
             else "N candidates")
    ws = _check_options(max_workspace_bytes, precision)
    be = resolve_backend(backend, [xx], triton_unsupported=_triton_gap(xx, k))
    check_finite(name, xx, layer_major=True)
    if normalize:
        xx = unit_rows(xx)
    v, i = _knn(xx, xx, k, 0 if exclude_self else -1, True, be, ws, precision)
    return (v[0], i[0]) if squeeze else (v, i)


def knn(queries: torch.Tensor, keys: torch.Tensor, k: int, *, normalize: bool = True,
        self_shift: int | None = None, backend: str = "auto",
        max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Query/key form: the k keys most similar to each query (the shard building block).

    Args:
        queries: `[M, D]` or `[L, M, D]`.
        keys: `[N, D]` or `[L, N, D]` with the same L and D.
        k: 1 <= k <= N (N-1 when a self index is excluded).
        self_shift: if given, key `i + self_shift` is excluded for query `i`
            (queries are keys[self_shift:...]: a shard searching the full set).

    Returns:
        `(values, indices)` of shape `[M, k]` / `[L, M, k]`; indices into `keys`.
    """
    q, squeeze = _as_layers("queries", queries)
    kk, squeeze_k = _as_layers("keys", keys)
    if squeeze != squeeze_k or q.shape[0] != kk.shape[0]:
        raise ValueError(f"queries and keys must have the same layers, got shapes "
                         f"{tuple(queries.shape)} and {tuple(keys.shape)}")
    if q.shape[-1] != kk.shape[-1]:
        raise ValueError(f"queries and keys must have the same feature size D, got "
                         f"{q.shape[-1]} and {kk.shape[-1]}")
    if q.device != kk.device:
        raise ValueError(f"queries and keys must be on one device, got {q.device} and {kk.device}")
    shift = -1 if self_shift is None else check_int("self_shift", self_shift, lo=0)
    n = kk.shape[1]
    if shift >= 0 and shift + q.shape[1] > n:
        raise ValueError(f"self_shift={shift} with {q.shape[1]} queries points past the {n} keys")
    _check_k(k, n - 1 if shift >= 0 else n, "keys available per query")
    ws = _check_options(max_workspace_bytes, precision)
    be = resolve_backend(backend, [q, kk], triton_unsupported=_triton_gap(q, k))
    check_finite("queries", q, layer_major=True)
    check_finite("keys", kk, layer_major=True)
    if normalize:
        q, kk = unit_rows(q), unit_rows(kk)
    v, i = _knn(q, kk, k, shift, False, be, ws, precision)
    return (v[0], i[0]) if squeeze else (v, i)
