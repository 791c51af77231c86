"""Layer-pair alignment: every layer of A against every layer of B.

Each layer's kNN graph is computed once and all La x Lb overlaps come from one
`knn_overlap` call -- the per-pair loop of platonic-rep's `compute_score`
recomputes both graphs for every pair.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from vtalign.ops._common import check_finite, check_tensor
from vtalign.ops.knn import DEFAULT_WORKSPACE, cosine_knn
from vtalign.ops.overlap import knn_overlap

Features = Union[torch.Tensor, Sequence[torch.Tensor]]
METRICS = ("mutual_knn",)


def as_layer_list(name: str, feats: Features, *, concat: bool = False) -> list[torch.Tensor]:
    """Read platonic-rep's `[N, L, D]` tensor, a `[N, D]` tensor (one layer) or a
    list of per-layer `[N, D_l]` tensors into a list of `[N, D_l]` tensors.

    With `concat`, the layers concatenated along features (platonic-rep's layer
    index -1, taken before any normalisation) are appended as an extra layer.
    """
    if isinstance(feats, torch.Tensor):
        check_tensor(name, feats, ndims=(2, 3))
        layers = [feats] if feats.dim() == 2 else list(feats.unbind(1))
    elif isinstance(feats, (list, tuple)):
        if len(feats) == 0:
            raise ValueError(f"{name} is an empty list of layers")
        layers = list(feats)
        for i, t in enumerate(layers):
            check_tensor(f"{name}[{i}]", t, ndims=(2,))
        ns = {t.shape[0] for t in layers}
        if len(ns) > 1:
            raise ValueError(f"{name}: layers have different sample counts {sorted(ns)}")
    else:
        raise TypeError(f"{name} must be a tensor [N, L, D] or a list of [N, D_l] tensors, "
                        f"got {type(feats).__name__}")
    for i, t in enumerate(layers):
        if not bool(torch.isfinite(t).all()):
            check_finite(f"{name} layer {i}", t)
    if concat and len(layers) > 1:
        layers.append(torch.cat([t.to(layers[0].dtype) for t in layers], dim=1))
    return layers


def layer_knn(layers: list[torch.Tensor], k: int, *, normalize: bool = True, backend: str = "auto",
              max_workspace_bytes: int = DEFAULT_WORKSPACE) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` of a list of `[N, D_l]` layers (one batched call
    when all widths agree, one call per layer otherwise)."""
    kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
    widths = {(t.shape[1], t.dtype, t.device) for t in layers}
    if len(widths) == 1:
        return cosine_knn(torch.stack(layers), k, **kw)[1]
    return torch.stack([cosine_knn(t, k, **kw)[1] for t in layers])


@dataclass
class LayerAlignment:
    """Scores of every (layer of A, layer of B) pair.

    Attributes:
        scores: `[La, Lb]` float64 tensor.
        best: `(i, j)`, the first maximum in row-major order.
        best_score: `scores[i, j]`.
        chance: the expected score of unrelated features (k / (N - 1) for mutual kNN).
        names_a / names_b: layer labels ("all" marks the concatenated extra layer).
    """
    scores: torch.Tensor
    best: tuple[int, int]
    best_score: float
    metric: str
    k: int
    n: int
    chance: float
    names_a: list[str] = field(default_factory=list)
    names_b: list[str] = field(default_factory=list)

    def table(self, digits: int = 3) -> str:
        """The score matrix as a markdown table, best pair in bold."""
        head = "| A \\ B | " + " | ".join(self.names_b) + " |"
        rule = "|---|" + "---|" * len(self.names_b)
        lines = [head, rule]
        for i, na in enumerate(self.names_a):
            cells = []
            for j in range(len(self.names_b)):
                v = f"{float(self.scores[i, j]):.{digits}f}"
                cells.append(f"**{v}**" if (i, j) == self.best else v)
            lines.append(f"| {na} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _names(n_layers: int, concat: bool) -> list[str]:
    names = [str(i) for i in range(n_layers)]
    if concat and n_layers > 1:
        names[-1] = "all"
    return names


def layerwise_alignment(feats_a: Features, feats_b: Features, metric: str = "mutual_knn", k: int = 10,
                        normalize: bool = True, *, concat: bool = False, backend: str = "auto",
                        max_workspace_bytes: int = DEFAULT_WORKSPACE) -> LayerAlignment:
    """Alignment of every layer of A with every layer of B.

    Args:
        feats_a, feats_b: `[N, L, D]` tensors (platonic-rep layout) or lists of
            per-layer `[N, D_l]` tensors; the same N in both.
        metric: "mutual_knn".
        k: neighbours per sample (1 <= k <= N-1).
        normalize: L2-normalise rows first (platonic-rep's default).
        concat: add "all layers concatenated" as an extra last layer on each side.

    Returns:
        A `LayerAlignment` with `.scores [La, Lb]`, `.best`, `.best_score`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    la = as_layer_list("feats_a", feats_a, concat=concat)
    lb = as_layer_list("feats_b", feats_b, concat=concat)
    n = la[0].shape[0]
    if lb[0].shape[0] != n:
        raise ValueError(f"feats_a and feats_b must have the same number of samples, got {n} and "
                         f"{lb[0].shape[0]}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an int in [1, N-1] = [1, {n - 1}], got {k!r}")
    kw = dict(normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)
    ia = layer_knn(la, k, **kw)
    ib = layer_knn(lb, k, **kw)
    scores = knn_overlap(ia, ib, backend=backend).cpu()
    flat = int(torch.argmax(scores))
    best = (flat // scores.shape[1], flat % scores.shape[1])
    return LayerAlignment(scores=scores, best=best, best_score=float(scores[best]), metric=metric,
                          k=k, n=n, chance=k / (n - 1), names_a=_names(len(la), concat),
                          names_b=_names(len(lb), concat))
