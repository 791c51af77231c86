"""Every public op of vtalign.ops with backend="triton" on the test device (the GPU, or
the interpreter without one) against the float64 reference, forward and backward, for
float32 (3xTF32), TF32, float16 and bfloat16 inputs. Tolerances: tests/gpu/tolerances.py.

The comparisons reuse `vtalign selftest`'s helpers (`grad_checks`, `rel_error`,
`neighbour_gap`); dense references run on the inputs' device in float64, the soft-DTW
reference (a Python loop over cells) on the CPU.
"""
import pytest
import torch

import vtalign
from tests._device import TRITON_DEVICE as DEV
from tests.gpu.checks import assert_passed, neighbour_checks, unit64
from tests.gpu.tolerances import (
    COSINE,
    HALF,
    OVERLAP,
    OVERLAP_PER_SAMPLE,
    PRECISIONS,
    SOFT_DTW,
    as_precision,
    loss_tol,
    max_rel_error,
)
from vtalign.ops import unit_rows
from vtalign.reference import contrastive as ref_c
from vtalign.reference import knn as ref_knn
from vtalign.reference import soft_dtw as ref_sd
from vtalign.selftest import Check, grad_checks, rel_error

pytestmark = pytest.mark.gpu

SCALE = 10.0  # CLIP's learned logit scale sits between 10 and 100; the bounds grow with it


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cosine_knn(precision, sizes, gen):
    L, N, D, k = sizes.knn
    x, kw = as_precision(torch.randn(L, N, D, generator=gen), precision)
    x = x.to(DEV)
    v, i = vtalign.cosine_knn(x, k, backend="triton", **kw)
    assert v.device.type == DEV.type
    x64 = unit64(x)
    checks = neighbour_checks("cosine_knn", x64, x64, v, i, k, COSINE[precision], self_shift=0)
    if precision in HALF:  # sharp: the very half-precision unit rows the kernel multiplies
        u = unit_rows(x).double()
        checks += neighbour_checks("cosine_knn[own unit rows]", u, u, v, i, k, COSINE["float32"], self_shift=0)
    assert_passed(checks)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_knn_query_key(precision, sizes, gen):
    """A shard of the keys searching all of them (the distributed building block)."""
    L, N, D, k = sizes.knn
    M = sizes.knn_queries
    keys, kw = as_precision(torch.randn(L, N, D, generator=gen), precision)
    keys = keys.to(DEV)
    shift = N // 3
    v, i = vtalign.knn(keys[:, shift:shift + M], keys, k, self_shift=shift, backend="triton", **kw)
    k64 = unit64(keys)
    assert_passed(neighbour_checks("knn", k64[:, shift:shift + M], k64, v, i, k, COSINE[precision], shift))


def test_knn_overlap(sizes, gen):
    La, Lb, N, k = sizes.overlap
    ids = 3 * k  # lists drawn from a few ids, so overlaps are frequent
    ia = torch.rand(La, N, ids, generator=gen).argsort(-1)[..., :k]
    ib = torch.rand(Lb, N, ids, generator=gen).argsort(-1)[..., :k].int()
    want = ref_knn.knn_overlap(ia, ib, reduce="none")
    per = vtalign.knn_overlap(ia.to(DEV), ib.to(DEV), reduce="none", backend="triton")
    mean = vtalign.knn_overlap(ia.to(DEV), ib.to(DEV), backend="triton")
    assert per.device.type == DEV.type and mean.dtype == torch.float64
    shape = f"{La}x{Lb} layers, N={N}, k={k}"
    assert_passed([Check("knn_overlap", "per sample", shape, rel_error(per, want), OVERLAP_PER_SAMPLE, 0.0),
                   Check("knn_overlap", "mean", shape, rel_error(mean, want.mean(-1)), OVERLAP, 0.0)])


def test_mutual_knn(sizes, gen):
    """Huh et al.'s metric on two views of one latent. A row whose k-th and (k+1)-th
    reference similarities are within rounding (2·COSINE) may swap them on a GPU, which
    moves that row's score by at most 1: the bound is their count / N."""
    N, Da, Db, k = sizes.mutual
    z = torch.randn(N, 6, generator=gen)
    a = torch.tanh(z @ torch.randn(6, Da, generator=gen)) + 0.3 * torch.randn(N, Da, generator=gen)
    b = torch.relu(z @ torch.randn(6, Db, generator=gen)) + 0.3 * torch.randn(N, Db, generator=gen)
    got = vtalign.mutual_knn(a.to(DEV), b.to(DEV), k=k, backend="triton")
    lists, ambiguous = [], torch.zeros(N, dtype=torch.bool)
    for f in (a, b):
        v, i = ref_knn.cosine_knn(f.to(DEV).double(), k + 1)
        lists.append(i[:, :k].cpu())
        ambiguous |= ((v[:, k - 1] - v[:, k]).abs() <= 2 * COSINE["float32"]).cpu()
    want = float(ref_knn.knn_overlap(lists[0][None], lists[1][None])[0, 0])
    assert want > 3 * k / N  # the shared latent lifts it well above chance
    assert abs(got - want) <= int(ambiguous.sum()) / N + OVERLAP, (got, want, int(ambiguous.sum()))


# ------------------------------------------------------------------- contrastive
def _variant(name: str, B: int, gen):
    """(rows, columns, positives or None, symmetric) of a contrastive problem."""
    if name == "identity":
        return B, B, None, True
    if name == "masked":  # false negatives masked in: a few extra positives per row
        pos = torch.rand(B, B, generator=gen) < 4.0 / B
        return B, B, pos | torch.eye(B, dtype=torch.bool), True
    # "captions": four captions per video, rows scored against every video
    m = B // 4
    return B, m, torch.arange(B)[:, None] // 4 == torch.arange(m)[None, :], False


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", ["identity", "masked", "captions"])
def test_contrastive_loss(variant, precision, sizes, gen):
    B, D = sizes.contrastive
    n, m, pos, sym = _variant(variant, B, gen)
    a, kw = as_precision(torch.randn(n, D, generator=gen), precision)
    b, _ = as_precision(torch.randn(m, D, generator=gen), precision)
    pos = None if pos is None else pos.to(DEV)
    scale = torch.tensor(SCALE)
    tol = loss_tol(precision, SCALE)
    op = f"contrastive_loss[{variant}, {precision}]"
    checks = grad_checks(
        op, f"{n}x{m}, D={D}",
        lambda x, y, s: vtalign.contrastive_loss(x, y, s, positives=pos, symmetric=sym, backend="triton", **kw),
        lambda x, y, s: ref_c.contrastive_loss(x, y, s, positives=pos, symmetric=sym),
        [a.to(DEV), b.to(DEV), scale.to(DEV)], DEV, tol, grad_error=max_rel_error)
    if precision in HALF:  # sharp: the loss of the very half-precision unit rows the kernel multiplies
        ua, ub = unit_rows(a.to(DEV)), unit_rows(b.to(DEV))
        got = vtalign.contrastive_loss(a.to(DEV), b.to(DEV), SCALE, positives=pos, symmetric=sym, backend="triton")
        want = ref_c.contrastive_loss(ua.double(), ub.double(), SCALE, positives=pos, symmetric=sym, normalize=False)
        checks.append(Check(op, "value on its own unit rows", f"{n}x{m}", rel_error(got, want),
                            loss_tol("float32", SCALE), 0.0))
    assert_passed(checks)


def _max_pool_ties(ta, vb, valid, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ta and of vb in a pair (i, j) whose best two valid frames are within 2·eps:
    rounding may pick either, and the max pool's gradient flows through the one picked."""
    cos = torch.einsum("itd,jtd->ijt", unit64(ta), unit64(vb))
    top2 = cos.masked_fill(~valid[None], float("-inf")).topk(min(2, cos.shape[-1]), dim=-1).values
    tie = (top2[..., 0] - top2[..., -1] <= 2 * eps) & (valid.sum(1) > 1)[None, :]
    return tie.any(1), tie.any(0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("pool", ["mean", "max", "lse"])
def test_slot_contrastive_loss(pool, precision, sizes, gen):
    """Value and gradients (ta, vb, the scale). "lse" pools with τ = 0.1: its frame weights
    are softmax(cos/τ), so rounding moves them 1/τ times more (the gradient bound too).
    "max" sends each pair's gradient through one frame: rows in a pair whose two best
    frames are within rounding are left out of the ta/vb gradient comparison (float32:
    a handful; at TF32 and in half precision most pairs, so there only the value and the
    scale's gradient, which do not depend on the frame picked, are compared)."""
    B, T, D = sizes.slot
    tau = 0.1
    ta, kw = as_precision(torch.randn(B, T, D, generator=gen), precision)
    vb, _ = as_precision(torch.randn(B, T, D, generator=gen), precision)
    valid = torch.rand(B, T, generator=gen) < 0.7
    valid[torch.arange(B), torch.randint(0, T, (B,), generator=gen)] = True
    ta, vb, valid = ta.to(DEV), vb.to(DEV), valid.to(DEV)
    tol = loss_tol(precision, SCALE)
    grad_tol = tol / tau if pool == "lse" else tol

    xs = [ta.clone().requires_grad_(), vb.clone().requires_grad_(), torch.tensor(SCALE, device=DEV,
                                                                                 requires_grad=True)]
    out = vtalign.slot_contrastive_loss(*xs[:2], valid, xs[2], pool=pool, pool_temperature=tau, backend="triton",
                                        **kw)
    out.backward()
    rs = [t.detach().double().requires_grad_() for t in xs]
    want = ref_c.slot_contrastive_loss(*rs[:2], valid, rs[2], pool=pool, pool_temperature=tau)
    want.backward()
    assert out.device.type == DEV.type
    op, shape = f"slot_contrastive_loss[{pool}, {precision}]", f"B={B}, T={T}, D={D}"
    checks = [Check(op, "value", shape, rel_error(out, want), tol, 0.0),
              Check(op, "gradient of the scale", shape, max_rel_error(xs[2].grad, rs[2].grad), grad_tol, 0.0)]
    keep_a = keep_b = torch.ones(B, dtype=torch.bool, device=DEV)
    if pool == "max":
        tie_a, tie_b = _max_pool_ties(ta, vb, valid, COSINE[precision])
        keep_a, keep_b = ~tie_a, ~tie_b
    if pool != "max" or precision == "float32":
        assert int(keep_a.sum()) >= B // 2 and int(keep_b.sum()) >= B // 2, "too many near-tied frames to compare"
        checks += [Check(op, "gradient of ta", shape, max_rel_error(xs[0].grad[keep_a], rs[0].grad[keep_a]),
                         grad_tol, 0.0),
                   Check(op, "gradient of vb", shape, max_rel_error(xs[1].grad[keep_b], rs[1].grad[keep_b]),
                         grad_tol, 0.0)]
    assert_passed(checks)


# ---------------------------------------------------------------------- soft-DTW
def _sequences(sizes, gen):
    B, N, M, D = sizes.soft_dtw
    x = torch.randn(B, N, D, generator=gen) / D ** 0.5
    y = torch.randn(B, M, D, generator=gen) / D ** 0.5
    xl = torch.randint(max(1, N // 2), N + 1, (B,), generator=gen).tolist()
    yl = torch.randint(max(1, M // 2), M + 1, (B,), generator=gen).tolist()
    xl[0], yl[0] = N, M  # one pair uses the full padded block
    return x, y, xl, yl


@pytest.mark.parametrize("case", ["full", "ragged", "band"])
def test_soft_dtw(case, sizes, gen):
    """Values and gradients in x and y (a weighted sum of the per-pair values, so each
    pair's gradient is scaled differently), ragged lengths and a Sakoe–Chiba band."""
    x, y, xl, yl = _sequences(sizes, gen)
    kw = {}
    if case != "full":
        kw = dict(x_lengths=xl, y_lengths=yl)
    if case == "band":
        kw["bandwidth"] = max(ref_sd.min_bandwidth(n, m) for n, m in zip(xl, yl)) + 2
    w = torch.linspace(1.0, 2.0, x.shape[0], dtype=torch.float64)
    checks = grad_checks(
        f"soft_dtw[{case}]", f"B={x.shape[0]}, N={x.shape[1]}, M={y.shape[1]}, D={x.shape[2]}",
        lambda p, q: (vtalign.soft_dtw(p, q, 0.3, backend="triton", **kw) * w.to(DEV, torch.float32)).sum(),
        lambda p, q: (ref_sd.soft_dtw(p, q, 0.3, **kw) * w).sum(),
        [x, y], DEV, SOFT_DTW, grad_error=max_rel_error)
    assert_passed(checks)


def test_soft_dtw_cost_and_alignment(sizes, gen):
    """The cost-matrix forms: values and E (the gradient in C), per-pair γ."""
    x, y, xl, yl = _sequences(sizes, gen)
    C = ref_sd.pairwise_cost(x, y)
    g = torch.linspace(0.1, 1.0, C.shape[0], dtype=torch.float64)
    kw = dict(x_lengths=xl, y_lengths=yl)
    Cd, gd = C.float().to(DEV), g.float().to(DEV)
    shape = f"C {list(C.shape)}"
    v = vtalign.soft_dtw_cost(Cd, gd, backend="triton", **kw)
    E = vtalign.soft_dtw_alignment_cost(Cd, gd, backend="triton", **kw)
    Ex = vtalign.soft_dtw_alignment(x.float().to(DEV), y.float().to(DEV), gd, backend="triton", **kw)
    rE = ref_sd.soft_dtw_alignment(C, g, **kw)
    assert E.device.type == DEV.type
    assert_passed([Check("soft_dtw_cost", "value", shape, rel_error(v, ref_sd.soft_dtw_cost(C, g, **kw)), SOFT_DTW,
                         0.0),
                   Check("soft_dtw_alignment_cost", "E", shape, rel_error(E, rE), SOFT_DTW, 0.0),
                   Check("soft_dtw_alignment", "E", shape, rel_error(Ex, rE), SOFT_DTW, 0.0)])


def test_soft_dtw_pairwise(sizes, gen):
    B, N, D = sizes.pairwise
    x = torch.randn(B, N, D, generator=gen) / D ** 0.5
    y = torch.randn(B + 1, N - 2, D, generator=gen) / D ** 0.5
    w = torch.randn(B, B + 1, generator=gen, dtype=torch.float64)
    assert_passed(grad_checks(
        "soft_dtw_pairwise", f"{B}x{B + 1} pairs, N={N}, D={D}",
        lambda p, q: (vtalign.soft_dtw_pairwise(p, q, 0.5, backend="triton") * w.to(DEV, torch.float32)).sum(),
        lambda p, q: (ref_sd.soft_dtw_pairwise(p, q, 0.5) * w).sum(),
        [x, y], DEV, SOFT_DTW, grad_error=max_rel_error))


def test_s2dtw(sizes, gen):
    """VT-TWINS' S2DTW: soft-DTW on the (2n+1) x (2m+1) weak-alignment matrix, so half
    the realistic lengths keep the reference's cell loop short."""
    B, N, M, D = sizes.soft_dtw
    n, m = max(2, N // 2), max(2, M // 2)
    x = torch.randn(B, n, D, generator=gen) / D ** 0.5
    y = torch.randn(B, m, D, generator=gen) / D ** 0.5
    kw = dict(gamma=0.2, smoothing_gamma=0.1, null_cost=0.5, cost="cosine")
    checks = grad_checks("s2dtw", f"B={B}, N={n}, M={m}, D={D}",
                         lambda p, q: vtalign.s2dtw(p, q, backend="triton", **kw).sum(),
                         lambda p, q: ref_sd.s2dtw(p, q, **kw).sum(), [x, y], DEV, SOFT_DTW,
                         grad_error=max_rel_error)
    P = vtalign.s2dtw_pairwise(x[:2].to(DEV), y[:3].to(DEV), backend="triton", **kw)
    checks.append(Check("s2dtw_pairwise", "values", f"2x3 pairs, N={n}, M={m}",
                        rel_error(P, ref_sd.s2dtw_pairwise(x[:2].double(), y[:3].double(), **kw)), SOFT_DTW, 0.0))
    assert_passed(checks)
