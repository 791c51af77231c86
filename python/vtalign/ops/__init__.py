"""Public ops: thin bindings over the Triton, C++, torch and reference backends.

One module or package per op family (`knn`, `overlap`, `knn_lists`, `contrastive`,
`soft_dtw`); the functions below are the package's export list, which `vtalign`
re-exports. `knn` and `soft_dtw` name their families here: the functions of those
names are `vtalign.knn` / `vtalign.ops.knn.knn` and `vtalign.soft_dtw` /
`vtalign.ops.soft_dtw.soft_dtw`.
"""
from vtalign.ops._common import unit_rows
from vtalign.ops.contrastive import contrastive_loss, slot_contrastive_loss
from vtalign.ops.knn import cosine_knn
from vtalign.ops.overlap import knn_overlap, mutual_knn
from vtalign.ops.soft_dtw import (
    s2dtw,
    s2dtw_pairwise,
    soft_dtw_alignment,
    soft_dtw_alignment_cost,
    soft_dtw_cost,
    soft_dtw_pairwise,
)

__all__ = [
    "cosine_knn", "knn_overlap", "mutual_knn", "unit_rows", "contrastive_loss", "slot_contrastive_loss",
    "soft_dtw_cost", "soft_dtw_pairwise", "soft_dtw_alignment", "soft_dtw_alignment_cost", "s2dtw",
    "s2dtw_pairwise",
]
