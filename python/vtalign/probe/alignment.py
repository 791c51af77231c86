"""Layer-pair alignment: every layer of A against every layer of B.

Each layer's kNN graph (or Gram statistics) is computed once and all La x Lb
scores come from one pass over them (`vtalign.probe.metrics`) -- the per-pair
loop of platonic-rep's `compute_score` recomputes both for every pair.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from vtalign.ops._common import check_finite, check_int, check_tensor
from vtalign.ops.knn import DEFAULT_WORKSPACE
from vtalign.probe import outliers as _outliers
from vtalign.probe._checks import check_backend, check_flag
from vtalign.probe.features import FeatureFile
from vtalign.probe.metrics import METRICS, USES_K, all_pair_scores, chance_level, check_metric, layer_count, layer_lists
from vtalign.probe.outliers import MODES as OUTLIER_MODES
from vtalign.probe.outliers import outlier_threshold, quantile_sum

Features = torch.Tensor | Sequence[torch.Tensor] | FeatureFile


class StreamedLayers(Sequence):
    """The layers of a `FeatureFile`, read from disk one at a time when indexed
    (optionally clamped, optionally with the concatenated layer last), so the
    probe holds one or two layers of a large feature set, never all of them."""

    def __init__(self, ff: FeatureFile, thresholds: list[float] | None = None, concat: bool = False):
        self.ff = ff
        self.thresholds = thresholds
        self.concat = concat and len(ff) > 1
        self.n = ff.n
        self.dims = list(ff.dims) + ([sum(ff.dims)] if self.concat else [])

    def __len__(self) -> int:
        return len(self.dims)

    def _read(self, i: int) -> torch.Tensor:
        x = self.ff.layer(i)
        if self.thresholds is not None:
            t = self.thresholds[i]
            x = x.clamp(-t, t)
        return x

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"layer {i} out of range for {len(self)} layers")
        i %= len(self)
        if self.concat and i == len(self.ff):
            return torch.cat([self._read(j) for j in range(len(self.ff))], dim=1)
        return self._read(i)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _streamed_thresholds(ff: FeatureFile, exact: bool, q: float) -> list[float]:
    """Clamp thresholds of a file: one shared by all layers when it is stacked
    `[N, L, D]` (platonic-rep's tensor rule), one per layer otherwise."""
    if not ff.stacked:
        return [outlier_threshold(ff.layer(i), q, exact=exact) for i in range(len(ff))]
    if exact:  # a global order statistic: the whole array is read for it
        t = outlier_threshold(ff.load(), q, exact=True)
    else:  # each sample's quantile spans its L·D entries, contiguous on disk: stream row blocks
        step = max(1, _outliers._CHUNK_ELEMS // max(1, sum(ff.dims)))
        t = sum(quantile_sum(ff.rows(s, s + step), q) for s in range(0, ff.n, step)) / ff.n
    return [t] * len(ff)


def as_layer_list(name: str, feats: Features, *, concat: bool = False) -> list[torch.Tensor]:
    """Read platonic-rep's `[N, L, D]` tensor, a `[N, D]` tensor (one layer) or a
    list of per-layer `[N, D_l]` tensors into a list of `[N, D_l]` tensors.

    With `concat`, the layers concatenated along features (platonic-rep's layer
    index -1, taken before any normalisation) are appended as an extra layer.
    """
    check_flag("concat", concat)
    if isinstance(feats, FeatureFile):
        feats.validate()  # one streaming pass: bad values fail before any computation
        return StreamedLayers(feats, concat=concat)
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
        devs = {str(t.device) for t in layers}
        if len(devs) > 1:
            raise ValueError(f"{name}: layers are on different devices {sorted(devs)}")
    else:
        raise TypeError(f"{name} must be a tensor [N, L, D] or a list of [N, D_l] tensors, "
                        f"got {type(feats).__name__}")
    for i, t in enumerate(layers):
        check_finite(f"{name} layer {i}", t)
    if concat and len(layers) > 1:
        layers.append(torch.cat([t.to(layers[0].dtype) for t in layers], dim=1))
    return layers


def layer_knn(layers: list[torch.Tensor], k: int, *, normalize: bool = True, backend: str = "auto",
              max_workspace_bytes: int = DEFAULT_WORKSPACE) -> torch.Tensor:
    """Neighbour lists `[L, N, k]` of a list of `[N, D_l]` layers, one search per layer."""
    check_flag("normalize", normalize)
    check_backend(backend)
    return layer_lists(layers, k, normalize=normalize, backend=backend, max_workspace_bytes=max_workspace_bytes)


_NOT_GIVEN = object()


def check_layer_options(metrics: Sequence[str], k, *, normalize, concat, outliers, backend,
                        max_workspace_bytes=_NOT_GIVEN) -> None:
    """Every option of the layer-pair entry points, checked before any feature is
    read: metric names, k an int >= 1 (its upper bound N - 1 needs the features),
    normalize / concat bools, the outlier mode, the backend, the workspace."""
    for m in metrics:
        check_metric(m)
    check_int("k", k, lo=1)
    check_flag("normalize", normalize)
    check_flag("concat", concat)
    if outliers not in OUTLIER_MODES:
        raise ValueError(f"outliers must be one of {OUTLIER_MODES}, got {outliers!r}")
    check_backend(backend)
    if max_workspace_bytes is not _NOT_GIVEN:
        check_int("max_workspace_bytes", max_workspace_bytes, lo=1)


def read_layers(name: str, feats: Features):
    """Shape, dtype and NaN/Inf checks of one side's features (no computation): the
    layer list of a tensor or list, the `FeatureFile` itself after one validating pass."""
    if isinstance(feats, FeatureFile):
        feats.validate()  # one streaming pass: bad values fail before any computation
        return feats
    return as_layer_list(name, feats)


def clamp_layers(feats: Features, layers, *, concat: bool = False, outliers: str | None = None,
                 q: float = 0.95):
    """platonic-rep's optional outlier clamp of `read_layers`' result, applied before
    the concatenated layer is formed: one threshold across all layers of a
    `[N, L, D]` tensor, one per layer for a list (`vtalign.probe.outliers`)."""
    if outliers not in OUTLIER_MODES:
        raise ValueError(f"outliers must be one of {OUTLIER_MODES}, got {outliers!r}")
    if isinstance(feats, FeatureFile):
        th = None if outliers is None else _streamed_thresholds(feats, outliers == "exact", q)
        return StreamedLayers(feats, th, concat=concat)
    if outliers is not None:
        exact = outliers == "exact"
        if isinstance(feats, torch.Tensor):
            t = outlier_threshold(feats, q, exact=exact)
            layers = [x.clamp(-t, t) for x in layers]
        else:
            layers = [x.clamp(-t, t) for x, t in
                      ((x, outlier_threshold(x, q, exact=exact)) for x in layers)]
    if concat and len(layers) > 1:
        layers = list(layers) + [torch.cat([t.to(layers[0].dtype) for t in layers], dim=1)]
    return layers


def prepare_layers(name: str, feats: Features, *, concat: bool = False, outliers: str | None = None,
                   q: float = 0.95) -> list[torch.Tensor]:
    """`as_layer_list` plus platonic-rep's optional outlier clamp, applied before the
    concatenated layer is formed: one threshold across all layers of a `[N, L, D]`
    tensor, one per layer for a list (`vtalign.probe.outliers`)."""
    if outliers not in OUTLIER_MODES:
        raise ValueError(f"outliers must be one of {OUTLIER_MODES}, got {outliers!r}")
    return clamp_layers(feats, read_layers(name, feats), concat=concat, outliers=outliers, q=q)


def read_pair(feats_a: Features, feats_b: Features) -> tuple:
    """Both sides through `read_layers`, and their common N (refused when they differ)."""
    ra, rb = read_layers("feats_a", feats_a), read_layers("feats_b", feats_b)
    n, nb = layer_count(ra)[0], layer_count(rb)[0]
    if nb != n:
        raise ValueError(f"feats_a and feats_b must have the same number of samples, got {n} and {nb}")
    return ra, rb, n


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


def _result(scores: torch.Tensor, metric: str, k: int, n: int, concat: bool) -> LayerAlignment:
    flat = int(torch.argmax(scores))
    best = (flat // scores.shape[1], flat % scores.shape[1])
    return LayerAlignment(scores=scores, best=best, best_score=float(scores[best]), metric=metric,
                          k=k, n=n, chance=chance_level(metric, n, k),
                          names_a=_names(scores.shape[0], concat), names_b=_names(scores.shape[1], concat))


def _check_k(k, n: int, metrics) -> None:
    """k against the sample count N (its type and k >= 1 come first, in `check_layer_options`)."""
    if not any(m in USES_K for m in metrics):
        return
    check_int("k", k, lo=1)
    if n < 2:
        raise ValueError(f"the kNN metrics need N >= 2 samples (k in [1, N-1]), got N={n}")
    if k > n - 1:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    if "cknna" in metrics and k < 2:
        raise ValueError(f"k must be >= 2 for cknna, got {k}")


def _check_n(n: int, metrics) -> None:
    gram_only = [m for m in metrics if m not in USES_K]
    if n < 2 and gram_only:  # one sample has no spread: CKA would be 0 / 0
        raise ValueError(f"{', '.join(gram_only)} need N >= 2 samples, got N={n}")
    if n < 4 and any(m in ("unbiased_cka", "cknna") for m in metrics):
        raise ValueError(f"unbiased_cka and cknna need N >= 4 samples, got N={n}")


def layerwise_alignments(feats_a: Features, feats_b: Features, metrics: Sequence[str] = METRICS,
                         k: int = 10, normalize: bool = True, *, concat: bool = False,
                         outliers: str | None = None, backend: str = "auto",
                         max_workspace_bytes: int = DEFAULT_WORKSPACE) -> dict[str, LayerAlignment]:
    """Several metrics over all layer pairs at once, the kNN lists shared between them.

    Same arguments as `layerwise_alignment`, with a sequence of metric names;
    returns `{metric: LayerAlignment}`. Every argument is checked (type, range,
    shapes, NaN/Inf, k <= N - 1) before anything is computed.
    """
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of names from {METRICS}, got {metrics!r}")
    check_layer_options(metrics, k, normalize=normalize, concat=concat, outliers=outliers, backend=backend,
                        max_workspace_bytes=max_workspace_bytes)
    ra, rb, n = read_pair(feats_a, feats_b)
    _check_k(k, n, metrics)
    _check_n(n, metrics)
    la = clamp_layers(feats_a, ra, concat=concat, outliers=outliers)
    lb = clamp_layers(feats_b, rb, concat=concat, outliers=outliers)
    scores = all_pair_scores(list(metrics), la, lb, k, normalize=normalize, backend=backend,
                             max_workspace_bytes=max_workspace_bytes)
    return {m: _result(s, m, k, n, concat) for m, s in scores.items()}


def layerwise_alignment(feats_a: Features, feats_b: Features, metric: str = "mutual_knn", k: int = 10,
                        normalize: bool = True, *, concat: bool = False, outliers: str | None = None,
                        backend: str = "auto", max_workspace_bytes: int = DEFAULT_WORKSPACE) -> LayerAlignment:
    """Alignment of every layer of A with every layer of B.

    Args:
        feats_a, feats_b: `[N, L, D]` tensors (platonic-rep layout), `[N, D]`
            tensors (one layer), lists of per-layer `[N, D_l]` tensors, or a
            `FeatureFile` from `vtalign.probe.features.open_features`, streamed
            from disk one layer at a time; same N.
        metric: one of "mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn",
            "cka", "unbiased_cka", "cknna" (platonic-rep's `AlignmentMetrics`).
        k: neighbours per sample (1 <= k <= N-1; >= 2 for cknna); unused by cka.
        normalize: L2-normalise rows first (platonic-rep's default).
        concat: add "all layers concatenated" as an extra last layer on each side.
        outliers: None, "exact" or "approximate": platonic-rep's q = 0.95 clamp.
        backend: kNN / list backend ("auto", "cpp", "torch", "triton", "reference").

    Returns:
        A `LayerAlignment` with `.scores [La, Lb]` float64, `.best`, `.best_score`.
    """
    check_metric(metric)
    return layerwise_alignments(feats_a, feats_b, [metric], k, normalize, concat=concat, outliers=outliers,
                                backend=backend, max_workspace_bytes=max_workspace_bytes)[metric]
