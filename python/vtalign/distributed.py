"""vtalign over torch.distributed: global-negative contrastive losses and sharded kNN.

Sections are independent: each uses only torch.distributed and the public ops.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from vtalign._distributed_knn import knn  # noqa: F401  (sharded exact kNN, its own module)
from vtalign.ops._common import (
    check_finite,
    check_precision,
    check_tensor,
    compute_dtype,
    resolve_backend,
    triton_dtype_gap,
    unit_rows_for,
)
from vtalign.ops.contrastive import (
    DEFAULT_WORKSPACE,
    check_logit_scale,
    check_positive_rows,
    check_slot_inputs,
    infonce_parts,
    slot_parts,
)
from vtalign.ops.contrastive.checks import check_common

# Global-negative contrastive losses (the sharded kNN is vtalign._distributed_knn).
#
# Every rank holds a shard of the pairs. The normalised shards are all-gathered
# (with gradient), then rank r scores its own rows against all columns and its
# own columns against all rows, with the single positive of local row i at
# global column offset_r + i (or the rows of a global positive mask). The loss
# value returned is the global one on every rank; each rank's backward gives the
# exact gradient of that global loss w.r.t. its shard of a and b (the gather's
# backward sums what the other ranks' terms owe this shard) and this rank's share
# of the logit-scale gradient (the shares sum to the full gradient). DDP, which
# averages gradients, therefore sees 1/world_size of the global gradient for
# every parameter, exactly as with a per-rank mean loss: multiply the loss by
# the world size if the exact global gradient is wanted.


def _world(group) -> tuple[int, int]:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("vtalign.distributed needs an initialised torch.distributed process group")
    return dist.get_rank(group), dist.get_world_size(group)


def _shard_sizes(n: int, device, group) -> list[int]:
    _, world = _world(group)
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine, group=group)
    return [int(s) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenation of every rank's x along dim 0 (shards may differ in size)."""
    top = max(sizes)
    pad = x.new_zeros((top - x.shape[0],) + tuple(x.shape[1:]))
    buf = torch.cat([x, pad]) if pad.shape[0] else x.contiguous()
    parts = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(parts, buf, group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's shard."""

    @staticmethod
    def forward(ctx, x, sizes, group):
        ctx.sizes, ctx.group = sizes, group
        ctx.rank = dist.get_rank(group)
        return _gather_padded(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def all_gather_with_grad(x: torch.Tensor, group=None) -> torch.Tensor:
    """Every rank's `x [n_r, ...]` concatenated in rank order, differentiable.

    The backward all-reduces the incoming gradient and returns this rank's slice,
    so a loss that uses the gathered tensor on every rank back-propagates into
    each shard the sum of what all ranks' losses owe it. Every rank must call
    backward (it is a collective).
    """
    sizes = _shard_sizes(x.shape[0], x.device, group)
    return _AllGatherWithGrad.apply(x, sizes, group)


def _global_value(partial: torch.Tensor, group) -> torch.Tensor:
    """The sum over ranks as the value, with the gradient of this rank's partial only."""
    total = partial.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return partial + (total - partial.detach())


def _global_positives(positives, total: int, device, symmetric: bool) -> torch.Tensor | None:
    if positives is None:
        return None
    if not isinstance(positives, torch.Tensor) or positives.dtype != torch.bool:
        raise TypeError("positives must be a bool torch.Tensor (the global [B, B] mask)")
    if tuple(positives.shape) != (total, total):
        raise ValueError(f"positives must be the global mask of shape {(total, total)}, "
                         f"got {tuple(positives.shape)}")
    check_positive_rows(positives, symmetric)
    return positives.to(device)


def _combine(row: torch.Tensor, col: torch.Tensor, total: int, symmetric: bool, reduction: str, group):
    if reduction == "none":  # this rank's pairs, as the single-process loss gives them
        return 0.5 * (row + col) if symmetric else row
    part = (0.5 * (row.sum() + col.sum())) if symmetric else row.sum()
    if reduction == "mean":
        part = part / total
    return _global_value(part, group)


def _shard_geometry(n: int, device, group) -> tuple[list[int], int, int]:
    rank, _ = _world(group)
    sizes = _shard_sizes(n, device, group)
    return sizes, sum(sizes[:rank]), sum(sizes)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, *, positives: torch.Tensor | None = None,
                     symmetric: bool = True, reduction: str = "mean", group=None, backend: str = "auto",
                     max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3") -> torch.Tensor:
    """`vtalign.contrastive_loss` with the negatives of every rank (global batch).

    Args:
        a, b: this rank's pairs, `[n_r, D]` each (row i of a pairs with row i of b);
            the global batch is rank 0's pairs, then rank 1's, ... (sizes may differ).
        logit_scale: float or 0-d tensor, the same on every rank.
        positives: optional global `[B, B]` bool mask (identical on every rank).
        symmetric, reduction, backend, max_workspace_bytes, precision: as in
            `vtalign.contrastive_loss`; reduction="none" gives this rank's `[n_r]`.

    Returns:
        the loss of the single-process call on the concatenated batch (same value on
        every rank; see the section comment for the gradients).
    """
    check_tensor("a", a, ndims=(2,))
    check_tensor("b", b, ndims=(2,))
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [n_r, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    check_common(symmetric, reduction, a.shape[0], b.shape[0])
    check_precision(precision)
    scale = check_logit_scale(logit_scale, a.device)
    check_finite("a", a)
    check_finite("b", b)
    be = resolve_backend(backend, [a, b], triton_unsupported=triton_dtype_gap(a, b))
    if be == "reference":
        raise ValueError("backend='reference' is single-process; use 'torch' (or 'auto') here")
    sizes, off, total = _shard_geometry(a.shape[0], a.device, group)
    pos = _global_positives(positives, total, a.device, symmetric)
    cdt = compute_dtype(a, b)
    a_hat = unit_rows_for(a, cdt, be)
    b_hat = unit_rows_for(b, cdt, be).to(a_hat.dtype)
    n = a.shape[0]
    kw = dict(backend=be, max_workspace_bytes=max_workspace_bytes, precision=precision)
    b_all = _AllGatherWithGrad.apply(b_hat, sizes, group)
    row, _ = infonce_parts(a_hat, b_all, scale, None if pos is None else pos[off:off + n].contiguous(),
                           offset=off, rows=True, cols=False, **kw)
    col = row.new_zeros(0)
    if symmetric:
        a_all = _AllGatherWithGrad.apply(a_hat, sizes, group)
        _, col = infonce_parts(a_all, b_hat, scale, None if pos is None else pos[:, off:off + n].contiguous(),
                               offset=-off, rows=False, cols=True, **kw)
    return _combine(row, col, total, symmetric, reduction, group)


def slot_contrastive_loss(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, logit_scale, *,
                          pool: str = "mean", pool_temperature: float = 0.1,
                          positives: torch.Tensor | None = None, symmetric: bool = True,
                          reduction: str = "mean", group=None, backend: str = "auto",
                          max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
                          ) -> torch.Tensor:
    """`vtalign.slot_contrastive_loss` with the negatives of every rank.

    ta, vb: this rank's `[n_r, T, D]`; valid: `[n_r, T]`; the rest as in
    `contrastive_loss` above and the single-process slot loss.
    """
    check_slot_inputs(ta, vb, valid, pool, pool_temperature)
    if ta.shape != vb.shape:
        raise ValueError(f"ta and vb must have the same shape [n_r, T, D], got {tuple(ta.shape)} and "
                         f"{tuple(vb.shape)}")
    check_common(symmetric, reduction, ta.shape[0], vb.shape[0])
    check_precision(precision)
    scale = check_logit_scale(logit_scale, ta.device)
    check_finite("ta", ta)
    check_finite("vb", vb)
    be = resolve_backend(backend, [ta, vb], triton_unsupported=triton_dtype_gap(ta, vb))
    if be == "reference":
        raise ValueError("backend='reference' is single-process; use 'torch' (or 'auto') here")
    sizes, off, total = _shard_geometry(ta.shape[0], ta.device, group)
    pos = _global_positives(positives, total, ta.device, symmetric)
    cdt = compute_dtype(ta, vb)
    ta_hat = unit_rows_for(ta, cdt, be)
    vb_hat = unit_rows_for(vb, cdt, be).to(ta_hat.dtype)
    n = ta.shape[0]
    kw = dict(pool=pool, pool_temperature=float(pool_temperature), backend=be,
              max_workspace_bytes=max_workspace_bytes, precision=precision)
    vb_all = _AllGatherWithGrad.apply(vb_hat, sizes, group)
    valid_all = _gather_padded(valid.to(torch.uint8), sizes, group).bool()  # gloo has no bool all_gather
    row, _ = slot_parts(ta_hat, vb_all, valid_all, scale, None if pos is None else pos[off:off + n].contiguous(),
                        offset=off, rows=True, cols=False, **kw)
    col = row.new_zeros(0)
    if symmetric:
        ta_all = _AllGatherWithGrad.apply(ta_hat, sizes, group)
        _, col = slot_parts(ta_all, vb_hat, valid, scale, None if pos is None else pos[:, off:off + n].contiguous(),
                            offset=-off, rows=False, cols=True, **kw)
    return _combine(row, col, total, symmetric, reduction, group)
