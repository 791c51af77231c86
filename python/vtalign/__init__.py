"""vtalign: fused kernels for video–text alignment.

Ops are layer-major (`[L, N, D]`); every op takes `backend="auto"|"triton"|
"cpp"|"torch"|"reference"` (or the VTALIGN_BACKEND environment variable).
The export list is `vtalign.ops.__all__` plus the two functions named after
their op family (`knn`, `soft_dtw`).
"""
from vtalign import ops
from vtalign.ops import *  # noqa: F403
from vtalign.ops.knn import knn
from vtalign.ops.soft_dtw import soft_dtw

__version__ = "0.1.0"
__all__ = [*ops.__all__, "knn", "soft_dtw", "__version__"]
