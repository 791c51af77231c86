"""Soft-DTW and S2DTW (docs/design.md §3.4), one concern per file, in dependency order:

  * `checks.py`: the band rule (`min_bandwidth`) and every input check. Value checks
    (finite inputs, γ, lengths, band, cost range) are device-side flags read back with
    one host sync per call (`DeferredChecks`); the lengths stay on the data's device;
  * `costs.py`: costs from one GEMM (`GemmCost`): sqeuclidean = |x|² + |y|² − 2x·yᵀ,
    negdot = −x·yᵀ, cosine = 1 − x̂·ŷᵀ; a pairwise cost for B1×B2 pairs is one
    [B1·N, D] × [D, B2·M] product viewed as [B1, B2, N, M]; no [.., N, M, D] tensor;
  * `torch_backend.py`: the "torch" backend (anti-diagonal recurrences in torch ops);
  * `cpp_fused.py`: the "cpp" backend's fused forward+backward from features;
  * `custom_ops.py`: `vtalign::soft_dtw_fwd` (values and the DP state) and
    `vtalign::soft_dtw_bwd` (E·grad and ⟨E, C⟩) with fake kernels; autograd on the
    forward op: ∂/∂C = E (the backward recurrence, never autograd through the DP) and
    ∂/∂γ = (value − ⟨E, C⟩)/γ; the dispatch of a checked cost tensor to "cpp"
    (csrc/soft_dtw.cpp), "triton" (kernels/soft_dtw.py) or "torch";
  * `api.py`: `soft_dtw`, `soft_dtw_cost`, `soft_dtw_pairwise`, `soft_dtw_alignment`,
    `soft_dtw_alignment_cost`: every check runs there, before any kernel;
  * `weak_alignment.py`: S2DTW (`s2dtw`, `s2dtw_pairwise`, `s2dtw_matrix`).

The band rule and the conventions are those of `vtalign.reference.soft_dtw`.
"""
from vtalign.ops.soft_dtw.api import (
    soft_dtw,
    soft_dtw_alignment,
    soft_dtw_alignment_cost,
    soft_dtw_cost,
    soft_dtw_pairwise,
)
from vtalign.ops.soft_dtw.checks import COSTS, min_bandwidth
from vtalign.ops.soft_dtw.costs import pairwise_cost
from vtalign.ops.soft_dtw.weak_alignment import s2dtw, s2dtw_matrix, s2dtw_pairwise

__all__ = [
    "COSTS", "min_bandwidth", "pairwise_cost", "soft_dtw", "soft_dtw_cost", "soft_dtw_pairwise",
    "soft_dtw_alignment", "soft_dtw_alignment_cost", "s2dtw", "s2dtw_matrix", "s2dtw_pairwise",
]
