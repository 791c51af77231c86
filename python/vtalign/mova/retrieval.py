"""Retrieval metrics from a square score matrix: pair i is the ground truth of row i.

Ranks are 1-based and ties count against the ground truth (rank = 1 + #{j ≠ i: s_ij >= s_ii}),
so a model that scores everything alike gets the worst rank, never the best.
"""
from __future__ import annotations

import torch

RECALLS = (1, 5, 10)


def _check_scores(scores: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError("scores must be a floating-point tensor [N, N]")
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty square [N, N] matrix, got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite")


def ground_truth_ranks(scores: torch.Tensor) -> torch.Tensor:
    """[N] long: the 1-based rank of column i in row i of scores `[N, N]` (ties pessimistic)."""
    _check_scores(scores)
    diag = scores.diagonal()[:, None]
    ahead = (scores >= diag).sum(1) - 1  # the diagonal itself is always >= itself
    return ahead + 1


def rank_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """R@1, R@5, R@10 (percent), median rank (numpy convention: the mean of the two middle
    ranks for even N) and mean rank, from 1-based ranks `[N]`."""
    if not isinstance(ranks, torch.Tensor) or ranks.dim() != 1 or ranks.numel() == 0:
        raise ValueError("ranks must be a non-empty 1-D tensor")
    r = ranks.to(torch.float64)
    out = {f"R@{k}": float((r <= k).to(torch.float64).mean() * 100.0) for k in RECALLS}
    s = torch.sort(r).values
    n = len(s)
    out["MedR"] = float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)
    out["MeanR"] = float(r.mean())
    return out


def retrieval_metrics(scores: torch.Tensor) -> dict[str, dict[str, float]]:
    """Both directions from scores `[N_text, N_video]` (row i = caption i, column j = video j):
    {"t2v": {...}, "v2t": {...}} with R@1/R@5/R@10 in percent, MedR and MeanR."""
    _check_scores(scores)
    return {"t2v": rank_metrics(ground_truth_ranks(scores)), "v2t": rank_metrics(ground_truth_ranks(scores.T))}


def format_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A markdown table, one row per (model, direction), from {model: retrieval_metrics(...)}."""
    head = "| model | direction | R@1 | R@5 | R@10 | MedR | MeanR |\n|---|---|---:|---:|---:|---:|---:|"
    lines = [head]
    for name, m in rows.items():
        for d in ("t2v", "v2t"):
            x = m[d]
            lines.append(f"| {name} | {d} | {x['R@1']:.1f} | {x['R@5']:.1f} | {x['R@10']:.1f} | "
                         f"{x['MedR']:.1f} | {x['MeanR']:.1f} |")
    return "\n".join(lines)
