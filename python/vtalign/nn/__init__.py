"""nn.Module faces of the ops (drop-ins for the modules people already use)."""
from vtalign.nn.contrastive import ContrastiveLoss, SlotContrastiveLoss  # noqa: E402,F401
from vtalign.nn.soft_dtw import S2DTW, SoftDTW  # noqa: E402,F401
