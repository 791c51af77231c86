"""calibrated-similarity (Gröger, Wen & Brbić, "Revisiting the Platonic
Representation Hypothesis: An Aristotelian View", ICML 2026; PyPI
`calibrated-similarity`, github.com/mlbio-epfl/Aristotelian) with vtalign's
all-pairs permutation null.

Replace `from calibrated_similarity import calibrate, calibrate_layers` with
`from vtalign.compat.calibrated_similarity import calibrate, calibrate_layers`.
Signatures, defaults, the permutation draws (`torch.randperm(n, device=...,
generator=generator)` once per permutation, after the observed scores), the
order statistic, the add-one p-value and the float32 return tensors
`(calibrated, p_value, tau)` follow upstream.

`sim` takes one of two paths:
- any callable `sim(X, Y) -> scalar`: the per-pair loop, K·La·Lb calls, as upstream;
- a metric vtalign knows -- a name from `vtalign.probe.metrics.METRICS`, a
  `vtalign.compat.platonic.AlignmentMetrics` method (`cka`, `unbiased_cka`,
  `cknna`, or a kNN metric with `topk=` given through `functools.partial` or
  this module's `topk` keyword) -- the fast path: one kNN search per layer,
  then every permutation of every pair from the stored lists (kNN metrics,
  CKNNA) or from per-layer Grams (CKA). It measures the features as given,
  like `AlignmentMetrics` (pass `normalize=True` for cosine, scale-invariant
  scores), and with the same generator state returns what upstream returns
  with that `AlignmentMetrics` method (p and τ bit-equal for the kNN metrics;
  CKA and CKNNA to float32 rounding).

Differences: the fast path assumes no exact ties inside a neighbour list
(B[π]'s lists are B's re-indexed, `vtalign.probe.null_scores`); `perm_fn`'s
results are checked to be permutations; argument errors name the argument.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from vtalign.compat.platonic import AlignmentMetrics
from vtalign.probe.aristotelian import calibrated_value, check_agg, check_smax, critical_value, null_scores
from vtalign.probe.metrics import KNN_METRICS, METRICS, USES_K, check_int
from vtalign.probe.null_scores import draw_permutations

__all__ = ["calibrate", "calibrate_layers"]

Sim = Callable[[torch.Tensor, torch.Tensor], "float | torch.Tensor"] | str
PermFn = Callable[[int, torch.device], torch.Tensor]


def _fast_metric(sim, topk: int | None, n: int) -> tuple[str, int] | None:
    """(metric, k) when `sim` is a metric the all-pairs null computes; None for the generic loop."""
    if isinstance(sim, str):
        if sim not in METRICS:
            raise ValueError(f"sim: unknown metric name {sim!r}; choose one of {METRICS} or pass a callable")
        return sim, (n - 1 if topk is None and sim == "cknna" else 10 if topk is None else topk)
    fn, kw = sim, {}
    if isinstance(sim, functools.partial) and not sim.args:
        fn, kw = sim.func, dict(sim.keywords)
    name = next((m for m in AlignmentMetrics.SUPPORTED_METRICS if getattr(AlignmentMetrics, m) is fn), None)
    if name is None or name == "svcca":
        return None
    if name in ("cka", "unbiased_cka"):
        unbiased = kw.pop("unbiased", False) if name == "cka" else True
        kw.pop("rbf_sigma", None)
        if kw.pop("kernel_metric", "ip") != "ip" or kw or not isinstance(unbiased, bool):
            return None  # an RBF kernel (or anything unknown) has no Gram shortcut: the loop
        return ("unbiased_cka" if unbiased else "cka"), 10
    k = kw.pop("topk", topk)
    if name == "cknna":
        if kw.pop("distance_agnostic", False) is not False or kw.pop("unbiased", True) is not True:
            return None
        k = n - 1 if k is None else k
    if kw:
        return None
    if k is None:
        raise TypeError(f"sim: AlignmentMetrics.{name} needs topk; pass functools.partial(AlignmentMetrics."
                        f"{name}, topk=10) or topk=")
    return name, k


def _check_layers(name: str, layers) -> None:
    if not isinstance(layers, Sequence) or isinstance(layers, torch.Tensor) or len(layers) == 0:
        raise ValueError(f"{name} must be a non-empty list of [n, d] tensors, got {type(layers).__name__}")
    for i, x in enumerate(layers):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name}[{i}] must be a 2-dimensional tensor, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")


def _check(X_layers, Y_layers, K, alpha, smax, generator, perm_fn) -> tuple[int, torch.device]:
    _check_layers("X_layers", X_layers)
    _check_layers("Y_layers", Y_layers)
    n, device = X_layers[0].shape[0], X_layers[0].device
    if n == 0:
        raise ValueError("X and Y must have at least one sample")
    for name, layers in (("X_layers", X_layers), ("Y_layers", Y_layers)):
        for i, x in enumerate(layers):
            if x.shape[0] != n:
                raise ValueError(f"{name}[{i}] has {x.shape[0]} samples, X_layers[0] has {n}")
            if x.device != device:
                raise ValueError(f"{name}[{i}] is on {x.device}, X_layers[0] on {device}: one device for all")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K must be a positive integer, got {K!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    check_smax(smax)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if perm_fn is not None and not callable(perm_fn):
        raise TypeError(f"perm_fn must be a callable (n, device) -> LongTensor [n], got {type(perm_fn).__name__}")
    return n, device


def _agg_fn(agg) -> Callable[[torch.Tensor], torch.Tensor]:
    agg = check_agg(agg)
    if agg == "max":
        return lambda s: s.max()
    if agg == "mean":
        return lambda s: s.mean()
    return agg


def _finish(t_obs: torch.Tensor, null_t: torch.Tensor, alpha: float, smax: float | None):
    """(calibrated, p, τ) in float32 on the statistic's device, the same arithmetic as upstream."""
    tau = critical_value(t_obs, null_t, alpha)
    p = (1.0 + (null_t >= t_obs).to(torch.float32).sum()) / float(null_t.numel() + 1)
    return calibrated_value(t_obs, tau, None if smax is None else float(smax)), p, tau


def _f32(v, device) -> torch.Tensor:
    return torch.as_tensor(v, device=device, dtype=torch.float32)


@torch.no_grad()
def calibrate_layers(X_layers: list[torch.Tensor], Y_layers: list[torch.Tensor], sim: Sim, *,
                     agg: str | Callable[[torch.Tensor], torch.Tensor] = "max", K: int = 200, alpha: float = 0.05,
                     smax: float | None = 1.0, generator: torch.Generator | None = None,
                     perm_fn: PermFn | None = None, topk: int | None = None,
                     normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Calibrated aggregate of the layer-pair scores S[i, j] = sim(X_layers[i], Y_layers[j]).

    Args:
        X_layers: La tensors `[n, d_i]`; Y_layers: Lb tensors `[n, d_j]` (same n, same device).
        sim: a callable `sim(X, Y) -> scalar`, or a metric vtalign computes for all
            pairs at once (see the module docstring).
        agg: "max", "mean" or a callable `[La, Lb] -> scalar`.
        K: permutations; alpha: level of τ; smax: the largest score (None: relu(T - τ)).
        generator: draws `torch.randperm(n, device=X's device, generator=generator)`;
            perm_fn: `perm_fn(n, device)` instead.
        topk: neighbours for a metric named by string or a kNN `AlignmentMetrics`
            method passed without `topk` (vtalign extension; default 10, cknna N - 1).
        normalize: L2-normalise rows in the fast path (vtalign extension; default
            False, the features as given, like `AlignmentMetrics`).

    Returns:
        (calibrated, p_value, tau): float32 scalar tensors on X's device.
    """
    n, device = _check(X_layers, Y_layers, K, alpha, smax, generator, perm_fn)
    agg_fn = _agg_fn(agg)
    fast = _fast_metric(sim, topk, n)
    if fast is None and not callable(sim):
        raise TypeError(f"sim must be a callable sim(X, Y) -> scalar or a metric name, got {type(sim).__name__}")
    if fast is not None:
        metric, k = fast
        if metric in USES_K:
            check_int("topk", k, lo=2 if metric == "cknna" else 1, hi=n - 1)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {normalize!r}")
        perms = draw_permutations(n, K, generator=generator, device=device, perm_fn=perm_fn)
        obs, null = null_scores(metric, list(X_layers), list(Y_layers), perms, k=k, normalize=normalize)
        # float32 score matrices, aggregated one at a time like upstream's loop, so the
        # statistics (and so p and τ) are the very numbers upstream compares
        # (contiguous: a reduction over a strided view may sum in another order)
        t_obs = _f32(agg_fn(obs.to(device, torch.float32).contiguous()), device)
        null_t = torch.stack([_f32(agg_fn(s), device) for s in null.to(device, torch.float32).contiguous()])
        return _finish(t_obs, null_t, alpha, smax)
    if perm_fn is None:
        perm_fn = functools.partial(_randperm, generator=generator)
    la, lb = len(X_layers), len(Y_layers)

    def matrix(pi):
        s = torch.empty(la, lb, device=device, dtype=torch.float32)
        for i, x in enumerate(X_layers):
            for j, y in enumerate(Y_layers):
                s[i, j] = _f32(sim(x, y if pi is None else y[pi]), device)
        return s

    t_obs = _f32(agg_fn(matrix(None)), device)
    null_t = torch.stack([_f32(agg_fn(matrix(perm_fn(n, device))), device) for _ in range(K)])
    return _finish(t_obs, null_t, alpha, smax)


def _randperm(n: int, device: torch.device, *, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, device=device, generator=generator)


@torch.no_grad()
def calibrate(X: torch.Tensor, Y: torch.Tensor, sim: Sim, *, K: int = 200, alpha: float = 0.05,
              smax: float | None = 1.0, generator: torch.Generator | None = None, perm_fn: PermFn | None = None,
              topk: int | None = None, normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Calibrated score of one pair `X [n, d1]`, `Y [n, d2]`: `calibrate_layers([X], [Y], sim, ...)`
    (one layer each, so the aggregate is the score itself). Returns (calibrated, p_value, tau)."""
    for name, t in (("X", X), ("Y", Y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a 2-dimensional tensor, got {getattr(t, 'shape', type(t).__name__)}")
    return calibrate_layers([X], [Y], sim, agg="max", K=K, alpha=alpha, smax=smax, generator=generator,
                            perm_fn=perm_fn, topk=topk, normalize=normalize)


# every name that takes the fast path, for the docs and the tests
FAST_METRICS: tuple[str, ...] = KNN_METRICS + ("cka", "unbiased_cka", "cknna")
