"""Contrastive-loss input checks, naming the argument; value checks deferred to one host
sync per call (`DeferredChecks`)."""
from __future__ import annotations

import math

import torch

from vtalign.ops._common import DeferredChecks, check_same_device, check_tensor

DEFAULT_WORKSPACE = 64 << 20  # a few [chunk, B] tiles; larger chunks amortise per-op overhead
REDUCTIONS = ("mean", "sum", "none")
POOLS = ("mean", "max", "lse")
MIN_POOL_TEMPERATURE = 1e-30


def check_logit_scale(logit_scale, device: torch.device, checks: DeferredChecks | None = None) -> torch.Tensor:
    """The multiplier of the cosines as a 0-d tensor; a float or a 0-d tensor, finite and > 0.
    With `checks`, a tensor's value is checked there (one sync for every value check)."""
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float, torch.Tensor)):
        raise TypeError(f"logit_scale must be a float or a 0-d tensor, got {type(logit_scale).__name__}")
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.dim() != 0:
            raise ValueError(f"logit_scale must be a 0-d tensor, got shape {tuple(logit_scale.shape)}")
        if not logit_scale.is_floating_point():
            raise TypeError(f"logit_scale must have a floating dtype, got {logit_scale.dtype}")
        if checks is not None:
            v = logit_scale.detach()
            checks.add(~(torch.isfinite(v) & (v > 0)), lambda: _check_scale_value(float(v)))
        else:
            _check_scale_value(float(logit_scale.detach()))
        return logit_scale
    _check_scale_value(float(logit_scale))
    return torch.tensor(float(logit_scale), dtype=torch.float32, device=device)


def _check_scale_value(value: float) -> None:
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"logit_scale must be finite and > 0 (it multiplies the cosines; pass "
                         f"logit_scale.exp() for CLIP's log-parameter), got {value}")


def check_positives(positives, n: int, m: int, device, need_cols: bool,
                     checks: DeferredChecks | None = None) -> torch.Tensor | None:
    if positives is None:
        if n != m:
            raise ValueError(f"positives is required when the two sides differ in size ({n} vs {m})")
        return None
    if not isinstance(positives, torch.Tensor):
        raise TypeError(f"positives must be a bool torch.Tensor, got {type(positives).__name__}")
    if positives.dtype != torch.bool:
        raise TypeError(f"positives must have dtype torch.bool, got {positives.dtype}")
    if tuple(positives.shape) != (n, m):
        raise ValueError(f"positives must have shape {(n, m)}, got {tuple(positives.shape)}")
    if positives.device != device:
        raise ValueError(f"positives must be on {device}, got {positives.device}")

    if checks is None:
        check_positive_rows(positives, need_cols)
    else:
        bad = (~positives.any(1)).any()
        if need_cols:
            bad = bad | (~positives.any(0)).any()
        checks.add(bad, lambda: check_positive_rows(positives, need_cols))
    return positives.contiguous()


def value_checks(checks: DeferredChecks, logit_scale, positives, symmetric: bool, **sides: torch.Tensor):
    """The loss's value checks (scale, positives, finite inputs; plus whatever `checks`
    already holds) with one host sync. `sides`: the two inputs by name, rows first.
    Returns (scale, positives)."""
    (_, x), (_, y) = sides.items()
    scale = check_logit_scale(logit_scale, x.device, checks)
    pos = check_positives(positives, x.shape[0], y.shape[0], x.device, symmetric, checks)
    for name, t in sides.items():
        checks.finite(name, t)
    checks.run()
    return scale, pos


def check_positive_rows(positives: torch.Tensor, need_cols: bool) -> None:
    """Every row (and with `need_cols` every column) of the bool mask has a positive."""
    empty = ~positives.any(1)
    if bool(empty.any()):
        raise ValueError(f"positives: row {int(empty.nonzero()[0])} has no positive")
    if need_cols:
        empty = ~positives.any(0)
        if bool(empty.any()):
            raise ValueError(f"positives: column {int(empty.nonzero()[0])} has no positive "
                             "(symmetric=True needs one per column)")


def check_common(symmetric, reduction, n: int, m: int) -> None:
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none" and symmetric and n != m:
        raise ValueError("reduction='none' with symmetric=True needs equal sizes (one loss per pair)")


def check_slot_inputs(ta, vb, valid, pool, pool_temperature, checks: DeferredChecks | None = None) -> None:
    """Shape, dtype and value checks of the frame-slot loss, naming the argument."""
    check_tensor("ta", ta, ndims=(3,))
    check_tensor("vb", vb, ndims=(3,))
    if ta.shape[1:] != vb.shape[1:]:
        raise ValueError(f"ta and vb must share [T, D], got {tuple(ta.shape)} and {tuple(vb.shape)}")
    check_tensor("valid", valid, ndims=(2,), floating=False)
    if valid.dtype != torch.bool:
        raise TypeError(f"valid must have dtype torch.bool, got {valid.dtype}")
    if tuple(valid.shape) != (vb.shape[0], vb.shape[1]):
        raise ValueError(f"valid must have shape {(vb.shape[0], vb.shape[1])} (videos, frames), "
                         f"got {tuple(valid.shape)}")
    check_same_device(ta=ta, vb=vb, valid=valid)

    def no_frame():
        none = ~valid.any(1)
        if bool(none.any()):
            raise ValueError(f"valid: video {int(none.nonzero()[0])} has no valid frame")

    if checks is None:
        no_frame()
    else:
        checks.add((~valid.any(1)).any(), no_frame)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if isinstance(pool_temperature, bool) or not isinstance(pool_temperature, (int, float)):
        raise TypeError(f"pool_temperature must be a float, got {type(pool_temperature).__name__}")
    if not math.isfinite(pool_temperature) or pool_temperature <= 0:
        raise ValueError(f"pool_temperature must be finite and > 0, got {pool_temperature}")
    if pool == "lse" and pool_temperature < MIN_POOL_TEMPERATURE:
        # cos/τ must stay finite in float32, where the pool is computed
        raise ValueError(f"pool_temperature must be >= {MIN_POOL_TEMPERATURE:g} for pool='lse' (cos/τ would "
                         f"overflow float32), got {pool_temperature:g}; as τ -> 0 the lse pool tends to "
                         "pool='max'")
