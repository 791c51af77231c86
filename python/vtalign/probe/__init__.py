"""Probing: which layers of a video encoder and a text encoder align, and how strongly."""
from vtalign.probe.alignment import (LayerAlignment, as_layer_list, layer_knn, layerwise_alignment,
                                     layerwise_alignments)
from vtalign.probe.metrics import METRICS, all_pair_scores, chance_level, list_scores
from vtalign.probe.outliers import remove_outliers

__all__ = ["LayerAlignment", "METRICS", "all_pair_scores", "as_layer_list", "chance_level", "layer_knn",
           "layerwise_alignment", "layerwise_alignments", "list_scores", "remove_outliers"]
