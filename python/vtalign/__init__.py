"""vtalign: fused kernels for video–text alignment.

Ops are layer-major (`[L, N, D]`); every op takes `backend="auto"|"triton"|
"cpp"|"torch"|"reference"` (or the VTALIGN_BACKEND environment variable).
"""
from vtalign.ops import cosine_knn, knn, knn_overlap, mutual_knn

__version__ = "0.1.0"
__all__ = ["cosine_knn", "knn", "knn_overlap", "mutual_knn", "__version__"]
