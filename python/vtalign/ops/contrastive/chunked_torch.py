"""The "cpp" and "torch" backends of the contrastive losses: chunked logits in torch ops.

The products dominate the time, so a C++ twin would only re-implement BLAS; the
elementwise work per chunk is done in place."""
from __future__ import annotations

import torch


def _rows_per_chunk(m: int, per_elem_bytes: int, workspace: int) -> int:
    return max(1, int(workspace) // max(1, m * per_elem_bytes))


def _diag_cells(offset: int, r0: int, r1: int, m: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Local row and global column of the single positive j = i + offset in rows r0:r1."""
    rows = torch.arange(r0, r1, device=device)
    cols = rows + offset
    ok = (cols >= 0) & (cols < m)
    return rows[ok] - r0, cols[ok]


# Each chunk of logits is touched as few times as possible: the products dominate,
# but on a CPU every extra elementwise pass over a [chunk, M] tile costs about as
# much as a small fraction of a product. Row statistics take a max, one exp and a
# sum; the column sums come from the same exponentials through a matrix-vector
# product (below), and the backward forms both softmax terms from one exp.
_SAFE_SPREAD = 60.0  # e^-60 keeps ~27 orders of magnitude above fp32's smallest normal e^-87


class _ColumnLSE:
    """Online log-sum-exp down the columns across row chunks (optionally masked)."""

    def __init__(self, m: int, dtype, device):
        self.mx = torch.full((m,), float("-inf"), dtype=dtype, device=device)
        self.sum = torch.zeros(m, dtype=dtype, device=device)

    def add(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        new = torch.maximum(self.mx, s.amax(0))
        # a column with nothing seen yet stays at -inf; shift it by 0 so no inf - inf appears
        shift = torch.where(torch.isinf(new), torch.zeros_like(new), new)
        self.sum.mul_(torch.exp(self.mx - shift)).add_(torch.exp(s - shift).sum(0))
        self.mx = new

    def add_sums(self, shift: torch.Tensor, sums: torch.Tensor) -> None:
        """Fold column sums Σ_i e^{s_ij − shift} of one chunk (one scalar shift)."""
        new = torch.maximum(self.mx, shift.expand_as(self.mx))
        self.sum.mul_(torch.exp(self.mx - new)).add_(sums * torch.exp(shift - new))
        self.mx = new

    def value(self) -> torch.Tensor:
        shift = torch.where(torch.isinf(self.mx), torch.zeros_like(self.mx), self.mx)
        return torch.log(self.sum) + shift


def _cpu_forward(tile_fn, n: int, m: int, max_logit: float, positives, offset: int, rows: bool,
                 cols: bool, chunk: int, dtype, device):
    """Shared forward: `tile_fn(r0, r1, out) -> s [r1-r0, m]`, the scaled logits of rows r0:r1.

    Column sums: with row maxima m_i and E_ij = e^{s_ij − m_i} (already needed for the
    rows), Σ_i e^{s_ij − c} = Σ_i e^{m_i − c}·E_ij is one matrix-vector product, for the
    chunk maximum c. Terms it loses to underflow are below e^{c−87}; it is used only when
    every column's maximum is within _SAFE_SPREAD of c (always so when 2·max_logit <=
    _SAFE_SPREAD, max_logit bounding every |s|: the caller's bound, e.g. scale·max‖a‖·max‖b‖),
    which keeps the loss below 1e-11 relative; otherwise a second exp pass.
    """
    row_stats = torch.zeros(2, n, dtype=dtype, device=device)
    col_stats = torch.zeros(2, m, dtype=dtype, device=device)
    all_cols = _ColumnLSE(m, dtype, device) if cols else None
    pos_cols = _ColumnLSE(m, dtype, device) if cols and positives is not None else None
    always_safe = 2.0 * max_logit <= _SAFE_SPREAD
    s_buf = torch.empty(min(chunk, n) * m, dtype=dtype, device=device)
    e_buf = torch.empty(min(chunk, n) * m, dtype=dtype, device=device)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        s = tile_fn(r0, r1, s_buf[:(r1 - r0) * m].view(r1 - r0, m))
        mx = s.amax(1)
        e = torch.sub(s, mx[:, None], out=e_buf[:(r1 - r0) * m].view(r1 - r0, m)).exp_()
        if rows:
            row_stats[0, r0:r1] = mx + torch.log(e.sum(1))
            if positives is not None:
                row_stats[1, r0:r1] = torch.logsumexp(s.masked_fill(~positives[r0:r1], float("-inf")), 1)
        if positives is None:  # one positive per row/column: its log-sum is the logit itself
            li, gj = _diag_cells(offset, r0, r1, m, s.device)
            d = s[li, gj]
            if rows:
                row_stats[1, li + r0] = d
            if cols:
                col_stats[1, gj] = d
        if cols:
            c = mx.max()
            if always_safe or float(c - s.amax(0).min()) <= _SAFE_SPREAD:
                all_cols.add_sums(c, torch.mv(e.T, torch.exp(mx - c)))
            else:
                all_cols.add(s)
            if pos_cols is not None:
                pos_cols.add(s, positives[r0:r1])
    if cols:
        col_stats[0] = all_cols.value()
        if pos_cols is not None:
            col_stats[1] = pos_cols.value()
    return row_stats[0] - row_stats[1], col_stats[0] - col_stats[1], row_stats, col_stats


def _outer_factors(row_stats, col_stats, g_col):
    """(u, g_c·v) with e^{lse_r,i − lse_c,j} = u_i·v_j, or None when the factors could overflow.

    Splitting at the midpoint K of all log-sum-exps keeps u = e^{lse_r − K} and
    v = e^{K − lse_c} within e^{±40} when the statistics span at most 80.
    """
    lo = torch.minimum(row_stats[0].min(), col_stats[0].min())
    hi = torch.maximum(row_stats[0].max(), col_stats[0].max())
    if float(hi - lo) > 80.0:
        return None
    k = 0.5 * (hi + lo)
    return torch.exp(row_stats[0] - k), g_col * torch.exp(k - col_stats[0])


def _grad_logits(s: torch.Tensor, positives, offset: int, r0: int, r1: int, rows: bool, cols: bool,
                 row_stats, col_stats, g_row, g_col, factors=None, h_buf=None) -> torch.Tensor:
    """dL/ds for rows r0:r1 of s (overwrites s). Row part g_i·(softmax_i − softmax over P(i)),
    column part likewise with the column statistics.

    With `factors` (single positives, both directions): the column softmax is the row
    softmax times u_i·v_j, so dL/ds = P ⊙ (g_r + u ⊗ g_c v) − diagonal: one exp pass.
    """
    m = s.shape[1]
    pos = positives[r0:r1] if positives is not None else None
    out = None
    if factors is not None and pos is None and rows and cols:
        u, gv = factors
        s.sub_(row_stats[0, r0:r1, None]).exp_()
        h = h_buf[:s.numel()].view_as(s) if h_buf is not None else torch.empty_like(s)
        torch.addr(g_row[r0:r1, None].expand_as(s), u[r0:r1], gv, out=h)
        out = s.mul_(h)
    else:
        if cols:
            e = s - col_stats[0][None, :]
            e.exp_().mul_(g_col[None, :])
            if pos is not None:
                p = (s - col_stats[1][None, :]).exp_().mul_(g_col[None, :])
                e.sub_(p.masked_fill_(~pos, 0.0))
            out = e
        if rows:
            if pos is not None:
                p = (s - row_stats[1, r0:r1, None]).exp_().mul_(g_row[r0:r1, None]).masked_fill_(~pos, 0.0)
            s.sub_(row_stats[0, r0:r1, None]).exp_().mul_(g_row[r0:r1, None])
            if pos is not None:
                s.sub_(p)
            out = s if out is None else out.add_(s)
    if pos is None:  # the single positive: softmax over {j} is 1
        li, gj = _diag_cells(offset, r0, r1, m, out.device)
        corr = torch.zeros(len(li), dtype=out.dtype, device=out.device)
        if rows:
            corr += g_row[li + r0]
        if cols:
            corr += g_col[gj]
        out[li, gj] -= corr
    return out


def cpu_infonce_forward(a, b, scale, positives, offset, rows, cols, workspace):
    n, m = a.shape[0], b.shape[0]
    chunk = _rows_per_chunk(m, 3 * a.element_size(), workspace)
    bt = b.T
    # |s_ij| <= |scale|·‖a_i‖·‖b_j‖ (Cauchy-Schwarz): the rows need not be unit (normalize=False)
    max_logit = abs(float(scale)) * float(torch.linalg.vector_norm(a, dim=1).max()) * float(
        torch.linalg.vector_norm(b, dim=1).max())
    # the scale goes into the [chunk, D] rows, not the [chunk, M] tile
    return _cpu_forward(lambda r0, r1, out: torch.mm(a[r0:r1] * scale, bt, out=out), n, m, max_logit,
                        positives, offset, rows, cols, chunk, a.dtype, a.device)


def cpu_infonce_backward(a, b, scale, positives, offset, rows, cols, row_stats, col_stats, g_row, g_col,
                          workspace):
    n, m = a.shape[0], b.shape[0]
    chunk = _rows_per_chunk(m, 3 * a.element_size(), workspace)
    da = torch.empty_like(a)
    db = torch.zeros_like(b)
    factors = _outer_factors(row_stats, col_stats, g_col) if positives is None and rows and cols else None
    s_buf = torch.empty(min(chunk, n) * m, dtype=a.dtype, device=a.device)
    h_buf = torch.empty(min(chunk, n) * m, dtype=a.dtype, device=a.device) if factors is not None else None
    bt = b.T
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        s = torch.mm(a[r0:r1] * scale, bt, out=s_buf[:(r1 - r0) * m].view(r1 - r0, m))
        g = _grad_logits(s, positives, offset, r0, r1, rows, cols, row_stats, col_stats, g_row, g_col,
                         factors, h_buf)
        torch.mm(g, b, out=da[r0:r1]).mul_(scale)
        db.addmm_(g.T, a[r0:r1], alpha=float(scale))
    # Σ_ij dL/ds_ij · cos_ij = Σ_i <da_i, a_i> / scale: no extra pass over the tiles
    dscale = torch.dot(da.reshape(-1), a.reshape(-1)) / scale
    return da, db, dscale


def pool_frames(cos: torch.Tensor, valid: torch.Tensor, pool: str, tau: float, *, weights: bool = False):
    """cos [T, r, M] (frame-major), valid [M, T] -> pooled [r, M] over the valid frames of column j.

    With `weights`, also d pooled / d cos `[T, r, M]`: the one-hot of the first maximum
    ("max"), or the softmax of cos/τ over the valid frames ("lse").
    """
    vt = valid.T[:, None, :]
    if pool == "max":
        best = cos.masked_fill(~vt, float("-inf")).max(0)
        if not weights:
            return best.values
        frames = torch.arange(cos.shape[0], device=cos.device)[:, None, None]
        return best.values, (frames == best.indices[None]).to(cos.dtype)
    count = valid.sum(1).to(cos.dtype)
    z = cos.masked_fill(~vt, float("-inf")).div_(tau)
    lse = torch.logsumexp(z, 0)
    pooled = tau * (lse - torch.log(count)[None, :])
    if not weights:
        return pooled
    return pooled, z.sub_(lse[None]).exp_()


def slot_chunk(m: int, t: int, itemsize: int, workspace: int) -> int:
    return _rows_per_chunk(m, (2 * t + 3) * itemsize, workspace)


def cpu_slot_forward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, workspace):
    n, t, _ = ta.shape
    m = vb.shape[0]
    # frame-major copies (O(B·T·D)): bmm on transposed views takes a slow strided path
    ta_t, vb_t = ta.transpose(0, 1).contiguous(), vb.transpose(0, 1).contiguous()

    def tile(r0, r1, out):
        return torch.mul(pool_frames(torch.bmm(ta_t[:, r0:r1], vb_t.transpose(1, 2)), valid, pool, tau), scale,
                         out=out)

    chunk = slot_chunk(m, t, ta.element_size(), workspace)
    # a pooled cosine of unit frames lies in [-1, 1] for every pool, so |s| <= |scale|
    return _cpu_forward(tile, n, m, abs(float(scale)), positives, offset, rows, cols, chunk, ta.dtype, ta.device)


def cpu_slot_backward(ta, vb, valid, scale, positives, offset, rows, cols, pool, tau, row_stats, col_stats,
                       g_row, g_col, workspace):
    n, t, _ = ta.shape
    m = vb.shape[0]
    chunk = slot_chunk(m, t, ta.element_size(), workspace)
    ta_t, vb_t = ta.transpose(0, 1).contiguous(), vb.transpose(0, 1).contiguous()
    dta = torch.empty_like(ta)
    dvb_t = torch.zeros_like(vb_t)
    dscale = torch.zeros((), dtype=ta.dtype, device=ta.device)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        a_c = ta_t[:, r0:r1]
        pooled, w = pool_frames(torch.bmm(a_c, vb_t.transpose(1, 2)), valid, pool, tau, weights=True)
        g = _grad_logits(pooled * scale, positives, offset, r0, r1, rows, cols, row_stats, col_stats,
                         g_row, g_col)
        dscale += torch.dot(g.reshape(-1), pooled.reshape(-1))
        w.mul_((g * scale)[None])  # d loss / d cos, one [T, chunk, M] slab
        dta[r0:r1] = torch.bmm(w, vb_t).transpose(0, 1)
        dvb_t.baddbmm_(w.transpose(1, 2), a_c)
    return dta, dvb_t.transpose(0, 1).contiguous(), dscale
