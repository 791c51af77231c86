"""Public ops: thin bindings over the Triton, C++, torch and reference backends."""
from vtalign.ops.knn import cosine_knn, knn, unit_rows
from vtalign.ops.overlap import knn_overlap, mutual_knn

__all__ = ["cosine_knn", "knn", "knn_overlap", "mutual_knn", "unit_rows"]
