"""Reference VT-TWINS (Ko et al., CVPR 2022): the S2DTW contrastive loss over vtalign's
fused soft-DTW ops, its temporal data augmentation, and sequence encoders for the demo."""
from vtalign.twins.augment import TemporalAugmentation, bounded_permutations, self_similarity_change
from vtalign.twins.loss import TwinsLoss, s2dtw_logits, twins_loss
from vtalign.twins.model import SequenceEncoders, mean_pooled_scores

__all__ = ["TemporalAugmentation", "bounded_permutations", "self_similarity_change", "TwinsLoss", "s2dtw_logits",
           "twins_loss", "SequenceEncoders", "mean_pooled_scores"]
