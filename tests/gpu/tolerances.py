"""The tolerances of tests/gpu, in one place, and the error measures they bound.

Every op is compared with the float64 reference in `vtalign.reference`. On a GPU the
error comes from how the dot products run; the interpreter computes them in plain
float32 and meets every bound here with room to spare.

PRECISIONS names how the inputs are given:
  "float32"   float32 inputs, the default precision="tf32x3": each operand is split into
              a TF32 high part and a TF32 low part and three tensor-core products are
              summed. The dropped low·low product and the split's residual are ~2^-22 of
              each product (float32 keeps 2^-24), so a cosine of two unit rows is off by
              ~1e-6 at most with accumulation over D <= 1024 in float32 blocks; 1e-5
              leaves room and is the value bound of `vtalign selftest`.
  "tf32"      float32 inputs, precision="tf32": one product of operands cut to TF32's 10
              mantissa bits; the tensor cores may truncate rather than round, 2^-10 per
              operand, so a cosine Σ a_i b_i is off by up to 2·2^-10·Σ|a_i b_i| <= 2e-3.
  "float16"   float16 inputs, normalised in float32 and rounded to float16 (11
              significant bits, round to nearest: 2^-11 per entry), then multiplied exactly
              with float32 accumulation: up to 2·2^-11 ≈ 1e-3 per cosine; 2e-3.
  "bfloat16"  the same with bfloat16's 8 significant bits: 2·2^-8 ≈ 7.8e-3; 1e-2.
The bounds are worst cases (every rounding error of one sign); typical errors are a
factor sqrt(D) smaller, so a kernel bug (a missed tile, a wrong row) shows far above
them. The half types also get a sharp check: against the reference computed on the very
half-precision unit rows the kernel multiplies, where only float32 accumulation is left
(float32's bound applies).

bfloat16 runs on a GPU only: the Triton interpreter keeps bfloat16 as uint16 and its
tl.dot multiplies the bit patterns (triton-lang/triton#11584, "not supported yet"), so
without CUDA float16 stands in for the half-precision path.
"""
from __future__ import annotations

import pytest
import torch

from tests._device import ON_CUDA

PRECISIONS = ("float32", "tf32", "float16", "bfloat16")
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}

# max |cosine error| of two unit rows, by precision (see above)
COSINE = {"float32": 1e-5, "tf32": 2e-3, "float16": 2e-3, "bfloat16": 1e-2}

# The contrastive losses: each logit is scale·cosine, so it is off by scale·COSINE; a
# row's loss (log-sum-exp minus the positives' log-sum-exp) is 1-Lipschitz in each, so
# off by at most 2·scale·COSINE. On top, float32's own exp/log and the tile-wise sums over
# up to ~10^4 columns: 1e-5 relative. Gradients: the softmax weights move by the same
# relative amount (e^{2δ} − 1 ≈ 2δ), so the same bound, relative to the largest entry.
LOSS_FLOAT32_ARITHMETIC = 1e-5

# soft-DTW has no dot products in its DP (no TF32): the Triton DP runs in float32 with
# the cost GEMMs at full float32 precision, and fast exp2/log2 (~2^-22). Over paths of
# a few hundred cells the rounding stays below ~2e-5 relative; `vtalign selftest`'s 1e-4.
SOFT_DTW = 1e-4

# neighbour overlaps count integers: only the final division rounds, in float64 for the
# mean over samples, in float32 for the per-sample values (count / k, k = 10 is not exact)
OVERLAP = 1e-12
OVERLAP_PER_SAMPLE = 2.0**-24

# relative rounding of a result returned in the inputs' dtype (a half-precision
# gradient is rounded once more on its way out)
ROUNDING = {"float32": 2.0**-24, "tf32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def loss_tol(precision: str, scale: float) -> float:
    """Bound on a contrastive loss's error (relative to max(1, |loss|)) and on its
    gradients' (relative to the largest gradient entry)."""
    return 2.0 * scale * COSINE[precision] + LOSS_FLOAT32_ARITHMETIC


def max_rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got − want| / max |want| in float64 on the CPU: a gradient's error relative to
    its largest entry (gradients of a mean loss are far below 1, where an error floored
    at 1 would say nothing)."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    return float((g - w).abs().max() / w.abs().max().clamp_min(1e-300))


def as_precision(x: torch.Tensor, precision: str) -> tuple[torch.Tensor, dict]:
    """(the input in the dtype the precision takes, the op's extra keyword arguments);
    skips bfloat16 in the interpreter (see above)."""
    if precision == "bfloat16" and not ON_CUDA:
        pytest.skip("the Triton interpreter multiplies bfloat16 bit patterns in tl.dot (triton-lang/triton#11584); "
                    "float16 covers the half-precision path without CUDA")
    if precision in HALF:
        return x.to(HALF[precision]), {}
    return x.float(), ({"precision": "tf32"} if precision == "tf32" else {})
