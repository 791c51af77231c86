"""Comparisons shared by tests/gpu, built on `vtalign selftest`'s (`vtalign.selftest`)."""
from __future__ import annotations

import torch

from vtalign.reference import knn as ref_knn
from vtalign.selftest import Check, neighbour_gap, rel_error


def assert_passed(checks: list[Check]) -> None:
    bad = [c for c in checks if not c.passed]
    assert not bad, "\n".join(f"{c.op} {c.what} [{c.shape}]: error {c.error:.3e} > {c.tolerance:.1e}" for c in bad)


def unit64(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=-1)


def neighbour_checks(op: str, q64, k64, vals, idx, k: int, eps: float, self_shift: int = -1) -> list[Check]:
    """An op's top-k `(vals, idx)` against the float64 reference on unit rows q64/k64.

    Robust to near-ties: the values at each rank must match the reference's (order
    statistics move by at most the per-similarity error ε), the value returned for an
    index must be that index's true similarity (ε), and the true similarity of the
    neighbour chosen at each rank must match the reference's value there (2ε: the op
    ranks by similarities that are each off by ε), so a neighbour may differ from the
    reference's only where the two are within rounding of each other.
    """
    rv, _ = ref_knn.knn(q64, k64, k, normalize=False, self_shift=self_shift)
    shape = f"{list(q64.shape)} x {k64.shape[1]} keys, k={k}"
    assert vals.shape == rv.shape and idx.dtype == torch.int64 and vals.dtype == torch.float32
    idx = idx.to(k64.device)
    srt = idx.sort(-1).values
    assert not bool((srt[..., 1:] == srt[..., :-1]).any()), "a neighbour listed twice"
    if self_shift >= 0:
        own = torch.arange(q64.shape[1], device=idx.device)[:, None] + self_shift
        assert not bool((idx == own).any()), "a query found itself"
    return [Check(op, "values at each rank", shape, rel_error(vals, rv), eps, 0.0),
            Check(op, "value of each returned index", shape, neighbour_gap(q64, k64, idx, vals.double()), eps, 0.0),
            Check(op, "true similarity of each chosen neighbour", shape, neighbour_gap(q64, k64, idx, rv), 2 * eps,
                  0.0)]
