"""Reference MoVA (docs/design.md §3.5): dual asymmetric projections with binary mask networks,
its loss over vtalign's contrastive ops, retrieval metrics and mask–window agreement."""
from vtalign.mova.agreement import auc, mask_window_auc
from vtalign.mova.loss import MoVALoss, mask_density
from vtalign.mova.masks import ConceptMaskNetwork, TemporalMaskNetwork, slot_encoding, straight_through_mask
from vtalign.mova.model import ClipBaseline, DualProjection, MoVA, MoVAOutput, masked_mean, pool_slots
from vtalign.mova.retrieval import format_table, ground_truth_ranks, rank_metrics, retrieval_metrics

__all__ = ["auc", "mask_window_auc", "MoVALoss", "mask_density", "ConceptMaskNetwork", "TemporalMaskNetwork",
           "slot_encoding", "straight_through_mask", "ClipBaseline", "DualProjection", "MoVA", "MoVAOutput",
           "masked_mean", "pool_slots", "format_table", "ground_truth_ranks", "rank_metrics", "retrieval_metrics"]
