"""Argument checks shared by the probing API: each names the argument and what is
wrong, and every public entry point runs them before it computes anything."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from vtalign.ops._common import BACKENDS, check_choice, check_int

# torch.Generator.manual_seed takes [0, 2**64 - 1]; the probe also seeds with seed + 1
SEED_MAX = 2 ** 63 - 1


def check_seed(seed) -> int:
    """`seed` as an int in [0, 2**63 - 1]: bools, floats (1.5 would silently be 1) and strings refused."""
    return check_int("seed", seed, lo=0, hi=SEED_MAX)


def check_flag(name: str, v) -> bool:
    """A bool option (normalize, concat): a truthy string or number is refused, not guessed."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(v).__name__} {v!r}")
    return bool(v)


def check_backend(backend) -> str:
    check_choice("backend", backend, BACKENDS)
    return backend


def check_fraction(name: str, v) -> float:
    """A real number strictly inside (0, 1)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1), got {type(v).__name__} {v!r}")
    v = float(v)
    if not 0.0 < v < 1.0:  # NaN fails too
        raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    return v


def check_finite_tensor(name: str, t: torch.Tensor) -> None:
    """Refuse NaN / Inf in `t`, naming the argument and the first bad position."""
    if t.is_floating_point():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            pos = tuple(int(p) for p in bad.nonzero()[0].tolist())
            val = t[pos].item()
            raise ValueError(f"{name} contains {'NaN' if math.isnan(val) else 'Inf'} "
                             f"(first at index {list(pos)}: {val})")
