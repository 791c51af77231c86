"""How well MoVA's temporal masks track the ground-truth concept windows.

For concept k, the cells that can tell are the valid frames (b, t) of captions b that hold
k; the label is "k is visible in frame t". Each concept is matched to the text-mask
dimension whose activity separates those labels best (highest AUC) on one half of the
captions and scored, with that dimension, on the other half (then the halves swap), so the
matching never sees the pairs it is scored on. The score is the mean AUC over concepts.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of scores `[n]` or `[n, D]` against bool labels `[n]`
    (Mann–Whitney, ties count ½). Needs at least one positive and one negative."""
    labels = np.asarray(labels, dtype=bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("labels need at least one positive and one negative")
    ranks = rankdata(np.asarray(scores, dtype=np.float64), axis=0)
    return (ranks[labels].sum(0) - pos * (pos + 1) / 2.0) / (pos * neg)


def mask_window_auc(mask_activity: torch.Tensor, valid: torch.Tensor, visible: torch.Tensor,
                    in_caption: torch.Tensor) -> dict[str, object]:
    """Mask–window agreement.

    Args:
        mask_activity: `[N, T, D]` text-mask activity (e.g. MoVA's `text_prob`).
        valid: `[N, T]` bool valid frames.
        visible: `[N, T, K]` bool ground truth: concept k visible in frame t of pair b.
        in_caption: `[N, K]` bool: concept k is in caption b.

    Returns:
        {"auc": mean over scored concepts, "per_concept": [K] list (None where a concept
        has no positive or no negative cell in a half), "dims": [K] matched dimension on
        the first half (None where unscored)}.
    """
    n, t, d = mask_activity.shape
    if tuple(valid.shape) != (n, t) or visible.shape[:2] != (n, t) or tuple(in_caption.shape) != (n, visible.shape[2]):
        raise ValueError("mask_activity [N,T,D], valid [N,T], visible [N,T,K], in_caption [N,K] must agree")
    if n < 2:
        raise ValueError("mask_window_auc needs at least 2 pairs (one per half)")
    act = mask_activity.detach().to(torch.float64).cpu().numpy()
    valid_np, vis, inc = valid.cpu().numpy(), visible.cpu().numpy(), in_caption.cpu().numpy()
    halves = [np.arange(n) % 2 == 0, np.arange(n) % 2 == 1]
    per, dims = [], []
    for k in range(vis.shape[2]):
        scores, first_dim = [], None
        for fit, ev in ((0, 1), (1, 0)):
            cells = [valid_np & inc[:, k:k + 1] & halves[h][:, None] for h in (fit, ev)]
            lab = [vis[:, :, k][c] for c in cells]
            if any(x.all() or not x.any() for x in lab):
                scores = []
                break
            best = int(np.argmax(auc(act[cells[0]], lab[0])))
            first_dim = best if first_dim is None else first_dim
            scores.append(float(auc(act[cells[1]][:, best], lab[1])))
        per.append(float(np.mean(scores)) if scores else None)
        dims.append(first_dim if scores else None)
    scored = [x for x in per if x is not None]
    if not scored:
        raise ValueError("no concept has both visible and hidden frames in both halves")
    return {"auc": float(np.mean(scored)), "per_concept": per, "dims": dims}
