"""Probing: which layers of a video encoder and a text encoder align, and how strongly."""
from vtalign.probe.alignment import LayerAlignment, as_layer_list, layer_knn, layerwise_alignment

__all__ = ["LayerAlignment", "as_layer_list", "layer_knn", "layerwise_alignment"]
