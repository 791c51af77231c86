"""vtalign: fused kernels for video–text alignment.

Ops are layer-major (`[L, N, D]`); every op takes `backend="auto"|"triton"|
"cpp"|"torch"|"reference"` (or the VTALIGN_BACKEND environment variable).
"""
from vtalign.ops import cosine_knn, knn, knn_overlap, mutual_knn

__version__ = "0.1.0"
__all__ = ["cosine_knn", "knn", "knn_overlap", "mutual_knn", "__version__"]
from vtalign.ops.contrastive import contrastive_loss, slot_contrastive_loss  # noqa: E402

__all__ += ["contrastive_loss", "slot_contrastive_loss"]
from vtalign.ops.soft_dtw import (  # noqa: E402
                                  s2dtw,
                                  s2dtw_pairwise,
                                  soft_dtw,
                                  soft_dtw_alignment,
                                  soft_dtw_alignment_cost,
                                  soft_dtw_cost,
                                  soft_dtw_pairwise,
)

__all__ += ["soft_dtw", "soft_dtw_cost", "soft_dtw_pairwise", "soft_dtw_alignment", "soft_dtw_alignment_cost",
            "s2dtw", "s2dtw_pairwise"]
