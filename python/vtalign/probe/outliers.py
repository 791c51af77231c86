"""platonic-rep's outlier clamp (`metrics.remove_outliers`, applied by its
`prepare_features` before alignment): clamp every entry to ±t with t a high
quantile (q = 0.95) of |x|.

- exact: t = sorted(|x|.flatten())[int(q · numel)] -- found with a k-th value
  selection, which returns the same element without sorting;
- approximate: t = mean over samples of each sample's q-quantile of |x|
  (linear interpolation, `torch.quantile`'s default), computed in row chunks
  because `torch.quantile` refuses large inputs.

One threshold is shared by all layers of a `[N, L, D]` tensor (each sample's
quantile runs over its L·D entries); a list of layers gets one per layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

MODES = (None, "exact", "approximate")
_CHUNK_ELEMS = 1 << 22


def _check_q(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < float(q) <= 1.0:
        raise ValueError(f"q must be a number in (0, 1], got {q!r}")
    return float(q)


def outlier_threshold(feats: torch.Tensor, q: float = 0.95, *, exact: bool = False) -> float:
    """The clamp threshold t of `feats` (`[N, ...]`; samples along dim 0)."""
    q = _check_q(q)
    if not isinstance(feats, torch.Tensor) or feats.numel() == 0 or feats.dim() < 2:
        raise ValueError("feats must be a non-empty tensor with samples along dim 0 and features after")
    if exact:
        flat = feats.detach().reshape(-1).abs()
        pos = min(int(q * flat.numel()), flat.numel() - 1)
        return float(torch.kthvalue(flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat,
                                    pos + 1).values)
    n = feats.shape[0]
    return quantile_sum(feats, q) / n


def quantile_sum(rows: torch.Tensor, q: float) -> float:
    """Σ over samples (dim 0) of each sample's q-quantile of |x| (linear
    interpolation, as `torch.quantile`), in row chunks; summing chunk results lets
    a caller stream the rows of a large file through it."""
    rows = rows.detach().flatten(start_dim=1)
    n, m = rows.shape
    chunk = max(1, _CHUNK_ELEMS // m)
    pos = q * (m - 1)
    lo = int(pos)
    hi = min(lo + 1, m - 1)
    frac = pos - lo
    total = torch.zeros((), dtype=torch.float64)
    for s in range(0, n, chunk):
        srt = rows[s:s + chunk].abs().sort(dim=1).values.to(torch.float64)
        total += (srt[:, lo] + frac * (srt[:, hi] - srt[:, lo])).sum()
    return float(total)


def remove_outliers(feats: torch.Tensor, q: float = 0.95, *, exact: bool = False) -> torch.Tensor:
    """`feats` clamped to ±`outlier_threshold(feats, q, exact=exact)` (q = 1: unchanged)."""
    if _check_q(q) == 1.0:
        return feats
    t = outlier_threshold(feats, q, exact=exact)
    return feats.clamp(-t, t)


def clamp_features(feats: torch.Tensor | Sequence[torch.Tensor], mode: str | None,
                   q: float = 0.95, *, name: str = "feats"):
    """Apply the clamp the way platonic-rep's `prepare_features` does.

    Args:
        feats: `[N, L, D]` / `[N, D]` tensor (one threshold) or a list of
            per-layer `[N, D_l]` tensors (one threshold per layer).
        mode: None (no clamp), "exact" or "approximate".
    """
    if mode not in MODES:
        raise ValueError(f"outliers must be one of {MODES}, got {mode!r}")
    if mode is None:
        return feats
    exact = mode == "exact"
    if isinstance(feats, torch.Tensor):
        return remove_outliers(feats, q, exact=exact)
    if isinstance(feats, (list, tuple)):
        return [remove_outliers(t, q, exact=exact) for t in feats]
    raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(feats).__name__}")
