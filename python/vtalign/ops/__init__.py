"""Public ops: thin bindings over the Triton, C++, torch and reference backends."""
from vtalign.ops.knn import cosine_knn, knn, unit_rows
from vtalign.ops.overlap import knn_overlap, mutual_knn

__all__ = ["cosine_knn", "knn", "knn_overlap", "mutual_knn", "unit_rows"]
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
