"""Probing: which layers of a video encoder and a text encoder align, and how strongly."""
from vtalign.probe.alignment import LayerAlignment, as_layer_list, layer_knn, layerwise_alignment, layerwise_alignments
from vtalign.probe.calibration import Calibration, calibrate
from vtalign.probe.features import FeatureFile, load_features, open_features, save_features
from vtalign.probe.metrics import METRICS, all_pair_scores, chance_level, list_scores
from vtalign.probe.outliers import remove_outliers
from vtalign.probe.scaling import ScalingFit, fit_scaling_law

__all__ = ["Calibration", "FeatureFile", "LayerAlignment", "METRICS", "ScalingFit", "all_pair_scores",
           "as_layer_list", "calibrate", "chance_level", "fit_scaling_law", "layer_knn", "layerwise_alignment",
           "layerwise_alignments", "list_scores", "load_features", "open_features", "remove_outliers",
           "save_features"]
