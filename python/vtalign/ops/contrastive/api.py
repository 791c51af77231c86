"""The public contrastive losses: every check runs here, before any kernel."""
from __future__ import annotations

import torch

from vtalign.ops._common import (
    HALF_DTYPES,
    DeferredChecks,
    check_precision,
    check_same_device,
    check_tensor,
    compute_dtype,
    resolve_backend,
    triton_dtype_gap,
    unit_rows_for,
)
from vtalign.ops.contrastive.checks import DEFAULT_WORKSPACE, check_common, check_slot_inputs, value_checks
from vtalign.ops.contrastive.custom_ops import infonce_op, slot_op
from vtalign.reference import contrastive as ref


def reduce_losses(row: torch.Tensor, col: torch.Tensor, symmetric: bool, reduction: str) -> torch.Tensor:
    if not symmetric:
        return row if reduction == "none" else (row.mean() if reduction == "mean" else row.sum())
    if reduction == "none":
        return 0.5 * (row + col)
    if reduction == "mean":
        return 0.5 * (row.mean() + col.mean())
    return 0.5 * (row.sum() + col.sum())


def infonce_parts(a_hat: torch.Tensor, b_hat: torch.Tensor, scale: torch.Tensor,
                  positives: torch.Tensor | None, *, offset: int = 0, rows: bool = True, cols: bool = True,
                  backend: str = "torch", max_workspace_bytes: int = DEFAULT_WORKSPACE,
                  precision: str = "tf32x3") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row and per-column InfoNCE losses over already normalised rows (no checks).

    a_hat `[N, D]`, b_hat `[M, D]`; positives `[N, M]` bool or None (then the single
    positive of row i is column i + offset). Returns `(row_loss [N], col_loss [M])`;
    a direction switched off returns zeros. The building block of
    `vtalign.distributed`, where the two sides are a shard and the gathered batch.
    """
    scale = scale.to(device=a_hat.device, dtype=compute_dtype(a_hat))
    out = infonce_op(a_hat, b_hat, scale, positives, int(offset), rows, cols, backend,
                      int(max_workspace_bytes), precision)
    return out[0], out[1]


def slot_parts(ta_hat: torch.Tensor, vb_hat: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor,
               positives: torch.Tensor | None, *, pool: str, pool_temperature: float, offset: int = 0,
               rows: bool = True, cols: bool = True, backend: str = "torch",
               max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row and per-column frame-slot losses over normalised frames (no checks).

    ta_hat `[N, T, D]`, vb_hat `[M, T, D]`, valid `[M, T]`; see `infonce_parts`.
    """
    scale = scale.to(device=ta_hat.device, dtype=compute_dtype(ta_hat))
    if pool == "mean":
        w = valid.to(vb_hat.dtype) / valid.sum(1, keepdim=True).to(vb_hat.dtype)
        a2 = ta_hat.reshape(ta_hat.shape[0], -1)
        b2 = (vb_hat * w[:, :, None]).reshape(vb_hat.shape[0], -1)
        return infonce_parts(a2, b2, scale, positives, offset=offset, rows=rows, cols=cols, backend=backend,
                             max_workspace_bytes=max_workspace_bytes, precision=precision)
    out = slot_op(ta_hat, vb_hat, valid.contiguous(), scale, positives, int(offset), rows, cols, pool,
                   float(pool_temperature), backend, int(max_workspace_bytes), precision)
    return out[0], out[1]


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, *, positives: torch.Tensor | None = None,
                     symmetric: bool = True, reduction: str = "mean", backend: str = "auto",
                     max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3",
                     normalize: bool = True) -> torch.Tensor:
    """InfoNCE / CLIP loss over s_ij = scale·⟨â_i, b̂_j⟩ without storing the logits.

    Args:
        a: `[N, D]` (e.g. text embeddings); rows are L2-normalised inside.
        b: `[M, D]` (e.g. video embeddings), the same D.
        logit_scale: the multiplier of the cosines (CLIP's `logit_scale.exp()`), a float
            or a 0-d tensor (gradients flow to it), finite and > 0.
        positives: optional `[N, M]` bool mask; row i's loss is
            −log Σ_{j∈P(i)} e^{s_ij} + log Σ_j e^{s_ij}, columns use P transposed.
            None means the identity (needs N == M). Every row (and, when symmetric,
            every column) needs a positive.
        symmetric: average the row (a→b) and column (b→a) losses.
        reduction: "mean", "sum" or "none" (per-index losses `[N]`; with symmetric the
            mean of row and column loss k, which needs N == M).
        backend: "auto", "triton", "cpp", "torch" or "reference".
        max_workspace_bytes: CPU chunk budget (the B×B logits are never built).
        precision: Triton dot precision for float32 inputs ("tf32x3" default, "ieee", "tf32").
        normalize: L2-normalise rows (cosine logits). False uses the rows as given, as
            open_clip's ClipLoss does with already-normalised features; the gradient then
            keeps its radial part.

    Returns:
        a 0-d loss (or `[N]` for reduction="none"), float32 (float64 for float64 inputs).
    """
    check_tensor("a", a, ndims=(2,))
    check_tensor("b", b, ndims=(2,))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature size D, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_same_device(a=a, b=b)
    n, m = a.shape[0], b.shape[0]
    check_common(symmetric, reduction, n, m)
    check_precision(precision)
    scale, pos = value_checks(DeferredChecks(), logit_scale, positives, symmetric, a=a, b=b)
    be = resolve_backend(backend, [a, b], triton_unsupported=triton_dtype_gap(a, b))
    if be == "reference":
        return ref.contrastive_loss(a, b, scale, positives=pos, symmetric=symmetric, reduction=reduction,
                                    normalize=normalize)
    cdt = compute_dtype(a, b)
    if normalize:
        a_hat, b_hat = unit_rows_for(a, cdt, be), unit_rows_for(b, cdt, be)
    else:
        keep = be == "triton" and a.dtype in HALF_DTYPES
        a_hat, b_hat = (a, b) if keep else (a.to(cdt), b.to(cdt))
    if be == "triton":
        b_hat = b_hat.to(a_hat.dtype)
    row, col = infonce_parts(a_hat, b_hat, scale, pos, rows=True, cols=symmetric, backend=be,
                             max_workspace_bytes=max_workspace_bytes, precision=precision)
    return reduce_losses(row, col, symmetric, reduction)


def slot_contrastive_loss(ta: torch.Tensor, vb: torch.Tensor, valid: torch.Tensor, logit_scale, *,
                          pool: str = "mean", pool_temperature: float = 0.1,
                          positives: torch.Tensor | None = None, symmetric: bool = True,
                          reduction: str = "mean", backend: str = "auto",
                          max_workspace_bytes: int = DEFAULT_WORKSPACE, precision: str = "tf32x3"
                          ) -> torch.Tensor:
    """MoVA frame-slot InfoNCE: s_ij = scale · pool_{t∈V_j} cos(ta[i,t], vb[j,t]).

    Args:
        ta: `[N, T, D]` per-slot text features (masked text subspaces).
        vb: `[M, T, D]` per-frame video features.
        valid: `[M, T]` bool, the valid frames V_j of video j (each video needs one).
        logit_scale: multiplier of the pooled cosines, float or 0-d tensor, > 0.
        pool: "mean", "max", or "lse" = τ·log((1/|V_j|) Σ_t exp(cos/τ)).
        pool_temperature: τ of the "lse" pool.
        positives, symmetric, reduction, backend, max_workspace_bytes, precision:
            as in `contrastive_loss`.

    Returns:
        a 0-d loss (or `[N]` for reduction="none"). No `[N, M, T]` tensor is built
        (the CPU path holds one `[chunk, M, T]` slab at a time).
    """
    checks = DeferredChecks()
    check_slot_inputs(ta, vb, valid, pool, pool_temperature, checks)
    n, m = ta.shape[0], vb.shape[0]
    check_common(symmetric, reduction, n, m)
    check_precision(precision)
    scale, pos = value_checks(checks, logit_scale, positives, symmetric, ta=ta, vb=vb)
    be = resolve_backend(backend, [ta, vb], triton_unsupported=triton_dtype_gap(ta, vb))
    if be == "reference":
        return ref.slot_contrastive_loss(ta, vb, valid, scale, pool=pool, pool_temperature=pool_temperature,
                                         positives=pos, symmetric=symmetric, reduction=reduction)
    cdt = compute_dtype(ta, vb)
    ta_hat, vb_hat = unit_rows_for(ta, cdt, be), unit_rows_for(vb, cdt, be)
    if be == "triton":
        vb_hat = vb_hat.to(ta_hat.dtype)
    row, col = slot_parts(ta_hat, vb_hat, valid, scale, pos, pool=pool, pool_temperature=float(pool_temperature),
                          rows=True, cols=symmetric, backend=be, max_workspace_bytes=max_workspace_bytes,
                          precision=precision)
    return reduce_losses(row, col, symmetric, reduction)
