"""nn.Module faces of the ops (drop-ins for the modules people already use)."""
from vtalign.nn.contrastive import ContrastiveLoss, SlotContrastiveLoss
from vtalign.nn.soft_dtw import S2DTW, SoftDTW

__all__ = ["ContrastiveLoss", "S2DTW", "SlotContrastiveLoss", "SoftDTW"]
