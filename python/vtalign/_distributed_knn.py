"""Exact kNN with the samples sharded across torch.distributed ranks.

Every rank keeps its own query shard; key shards are broadcast one at a time
(rank s sends its shard, everyone searches it with the local query/key kNN and
folds the candidates into a running top-k under the same total order as the
single-process search: higher similarity, then lower global index). Memory per
rank is its shard, one received shard and O(n_local·k); no rank ever holds all
samples or an N x N matrix. Re-exported as `vtalign.distributed.knn`.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from vtalign.ops.knn import DEFAULT_WORKSPACE, merge_topk
from vtalign.ops.knn import knn as qk_knn


def knn(x_shard: torch.Tensor, k: int, *, exclude_self: bool = True, normalize: bool = True,
        backend: str = "auto", group=None, max_workspace_bytes: int = DEFAULT_WORKSPACE
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of this rank's samples among all ranks' samples.

    Args:
        x_shard: this rank's rows, `[n_r, D]` or `[L, n_r, D]`; global sample order
            is rank 0's rows, then rank 1's, ... (shards may differ in size).
        k: 1 <= k <= N-1 (N = all ranks' rows; N when `exclude_self=False`).

    Returns:
        `(values, indices)` `[..., n_r, k]` with global indices, equal to the rows of
        `cosine_knn` on the concatenated samples.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("vtalign.distributed.knn needs an initialised torch.distributed process group")
    if not isinstance(x_shard, torch.Tensor) or x_shard.dim() not in (2, 3):
        raise ValueError(f"x_shard must be a [n, D] or [L, n, D] tensor, got "
                         f"{tuple(x_shard.shape) if isinstance(x_shard, torch.Tensor) else type(x_shard).__name__}")
    squeeze = x_shard.dim() == 2
    x = x_shard.unsqueeze(0) if squeeze else x_shard
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    _check_backend_device(x, group)
    # every rank learns every shard's size (and checks L and D agree) before any search;
    # on the data's device, since NCCL moves CUDA tensors only
    meta = torch.tensor([x.shape[0], x.shape[1], x.shape[2]], dtype=torch.int64, device=x.device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta, group=group)
    sizes = [int(m[1]) for m in metas]
    if any(int(m[0]) != x.shape[0] or int(m[2]) != x.shape[2] for m in metas):
        raise ValueError(f"all ranks must share L and D, got {[tuple(m.tolist()) for m in metas]}")
    total = sum(sizes)
    avail = total - 1 if exclude_self else total
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= avail:
        raise ValueError(f"k must be an int in [1, {avail}] for {total} samples over {world} ranks, got {k!r}")
    offsets = [sum(sizes[:s]) for s in range(world)]
    L, n, d = x.shape
    best_v = torch.full((L, n, k), float("-inf"), dtype=torch.float64 if x.dtype == torch.float64
                        else torch.float32, device=x.device)
    best_i = torch.full((L, n, k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=x.device)
    for s in range(world):
        keys = x.contiguous() if s == rank else torch.empty(L, sizes[s], d, dtype=x.dtype, device=x.device)
        dist.broadcast(keys, src=_global_rank(group, s), group=group)
        if sizes[s] == 0 or n == 0:
            continue
        shift = 0 if (s == rank and exclude_self) else None
        kk = min(k, sizes[s] - (1 if shift is not None else 0))
        if kk < 1:
            continue
        v, i = qk_knn(x, keys, kk, normalize=normalize, self_shift=shift, backend=backend,
                      max_workspace_bytes=max_workspace_bytes)
        best_v, best_i = merge_topk(torch.cat([best_v, v.to(best_v.dtype)], -1),
                                    torch.cat([best_i, i + offsets[s]], -1), k)
    return (best_v[0], best_i[0]) if squeeze else (best_v, best_i)


def _check_backend_device(x: torch.Tensor, group) -> None:
    """NCCL communicates CUDA tensors only: refuse CPU shards before the first collective."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and "gloo" not in backend and x.device.type != "cuda":
        raise ValueError(f"x_shard is on {x.device}, but the process group's backend ({backend}) "
                         "communicates CUDA tensors only; move the shard to this rank's GPU")


def _global_rank(group, group_rank: int) -> int:
    return group_rank if group is None else dist.get_global_rank(group, group_rank)
