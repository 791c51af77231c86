"""nn.Module faces of soft-DTW: a drop-in for pytorch-softdtw-cuda's `SoftDTW`, and S2DTW.

`SoftDTW(use_cuda, gamma=1.0, normalize=False, bandwidth=None, dist_func=None)`
takes the same constructor and call as pytorch-softdtw-cuda (Maghoumi):
`forward(X [B, N, D], Y [B, M, D]) -> [B]`, default distance the squared
Euclidean one, `normalize=True` the divergence with the X–X and Y–Y self terms,
`bandwidth` None or 0 for no band (its convention). What changes: any length
(no 1024 cap), unequal lengths with a band (the band follows the diagonal, so
the value is never +inf because of it), unequal N and M with `normalize=True`,
no B×N×M×D tensor, and gradients w.r.t. γ when γ is a tensor.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vtalign.ops import soft_dtw as ops
from vtalign.ops.soft_dtw.checks import check_pair


class SoftDTW(torch.nn.Module):
    """Soft-DTW loss module, constructor-compatible with pytorch-softdtw-cuda.

    Args:
        use_cuda: accepted for compatibility; the device of the inputs decides
            (CUDA tensors run the Triton kernels, CPU tensors the C++ ones).
        gamma: γ > 0 (a float, or a tensor to learn it).
        normalize: return sdtw(X, Y) − ½(sdtw(X, X) + sdtw(Y, Y)).
        bandwidth: Sakoe–Chiba half-width; None or 0 = no band (as in
            pytorch-softdtw-cuda); floats are floored.
        dist_func: None (squared Euclidean, from one GEMM), one of "sqeuclidean",
            "cosine", "negdot", or a callable `(X, Y) -> [B, N, M]`.
        backend: vtalign backend ("auto" picks by device).
    """

    def __init__(self, use_cuda: bool = False, gamma: float | torch.Tensor = 1.0,
                 normalize: bool = False, bandwidth: float | None = None,
                 dist_func: str | Callable | None = None, *, backend: str = "auto"):
        super().__init__()
        self.use_cuda = bool(use_cuda)
        self.gamma = gamma
        self.normalize = bool(normalize)
        if bandwidth is not None:
            if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) \
                    or not math.isfinite(bandwidth) or bandwidth < 0:
                raise ValueError(f"bandwidth must be None or a non-negative number, got {bandwidth!r}")
        # pytorch-softdtw-cuda prunes only when bandwidth > 0
        self.bandwidth = None if not bandwidth else int(math.floor(bandwidth))
        self.dist_func = "sqeuclidean" if dist_func is None else dist_func
        if not callable(self.dist_func) and self.dist_func not in ops.COSTS:
            raise ValueError(f"dist_func must be None, a callable or one of {ops.COSTS}, got {dist_func!r}")
        self.backend = backend

    def forward(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """X `[B, N, D]`, Y `[B, M, D]` -> soft-DTW values `[B]`."""
        if callable(self.dist_func):
            return self._forward_callable(X, Y)
        return ops.soft_dtw(X, Y, self.gamma, cost=self.dist_func, bandwidth=self.bandwidth,
                            normalize=self.normalize, backend=self.backend)

    def _forward_callable(self, X, Y):
        check_pair(X, Y, same_batch=True)
        v = ops.soft_dtw_cost(self.dist_func(X, Y), self.gamma, bandwidth=self.bandwidth,
                              backend=self.backend)
        if not self.normalize:
            return v
        vxx = ops.soft_dtw_cost(self.dist_func(X, X), self.gamma, bandwidth=self.bandwidth,
                                backend=self.backend)
        vyy = ops.soft_dtw_cost(self.dist_func(Y, Y), self.gamma, bandwidth=self.bandwidth,
                                backend=self.backend)
        return v - 0.5 * (vxx + vyy)

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, normalize={self.normalize}, bandwidth={self.bandwidth}, "
                f"dist_func={getattr(self.dist_func, '__name__', self.dist_func)}")


class S2DTW(torch.nn.Module):
    """VT-TWINS' S2DTW (locally smoothed soft-DTW with weak alignment), docs/design.md §3.4.

    `forward(x [B, N, D], y [B, M, D]) -> [B]`; `pairwise(x [B1, N, D], y [B2, M, D])
    -> [B1, B2]` (the score matrix of a sequence-contrastive loss, one GEMM and one
    DP run for all pairs). cost defaults to the negative dot product, as in VT-TWINS.
    """

    def __init__(self, gamma: float | torch.Tensor = 0.1, smoothing_gamma: float = 0.1,
                 null_cost: float = 0.5, cost: str | Callable = "negdot", *, backend: str = "auto"):
        super().__init__()
        self.gamma = gamma
        self.smoothing_gamma = smoothing_gamma
        self.null_cost = null_cost
        self.cost = cost
        self.backend = backend

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_lengths=None, y_lengths=None) -> torch.Tensor:
        return ops.s2dtw(x, y, gamma=self.gamma, smoothing_gamma=self.smoothing_gamma,
                         null_cost=self.null_cost, cost=self.cost, x_lengths=x_lengths,
                         y_lengths=y_lengths, backend=self.backend)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor, x_lengths=None, y_lengths=None) -> torch.Tensor:
        return ops.s2dtw_pairwise(x, y, gamma=self.gamma, smoothing_gamma=self.smoothing_gamma,
                                  null_cost=self.null_cost, cost=self.cost, x_lengths=x_lengths,
                                  y_lengths=y_lengths, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, smoothing_gamma={self.smoothing_gamma}, "
                f"null_cost={self.null_cost}, cost={getattr(self.cost, '__name__', self.cost)}")


__all__ = ["SoftDTW", "S2DTW"]
