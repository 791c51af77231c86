"""torch.compile (inductor) of each op family with backend="triton": the compiled call
gives the eager call's result, forward and backward.

fullgraph=True where the compiled function reaches the kernels through one registered
custom op (vtalign::knn, vtalign::knn_overlap_counts, the contrastive ops with their
registered autograd, vtalign::soft_dtw_fwd/bwd): Dynamo keeps the op opaque through its
fake kernel, so a training step around it compiles into one graph. The public
functions check values on the host before any kernel (NaN/Inf, masks without a
positive), a data-dependent branch and so a graph break by design: they are compiled
without fullgraph, and must still agree with eager.

Graphs that are only the op must reproduce eager bit for bit (the same kernels on the
same inputs); where inductor also fuses the torch code around it (the normalisation),
the two agree to float32 rounding.

Without CUDA only the fullgraph step of the contrastive core runs (the op with a custom
autograd, so the one with the most to trace): inductor compiles the code around it to
C++ there, ~10 s a graph on this project's 2-core CPU machine (~35 s for the contrastive
family alone), which `make test` cannot afford for every op.
"""
import importlib

import pytest
import torch

import vtalign
from tests._device import ON_CUDA
from tests._device import TRITON_DEVICE as DEV
from tests.gpu.checks import assert_passed, neighbour_checks, unit64
from tests.gpu.tolerances import COSINE

pytestmark = pytest.mark.gpu

knn_mod = importlib.import_module("vtalign.ops.knn")
overlap_mod = importlib.import_module("vtalign.ops.overlap")
cmod = importlib.import_module("vtalign.ops.contrastive")
sd_mod = importlib.import_module("vtalign.ops.soft_dtw.custom_ops")

CPU_FAMILY = "contrastive"  # the one family compiled without CUDA (docstring)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # each test compiles from scratch, without another test's guards
    yield
    torch._dynamo.reset()


def _family(name: str) -> None:
    if not ON_CUDA and name != CPU_FAMILY:
        pytest.skip(f"without CUDA only the {CPU_FAMILY} core compiles (inductor's C++ build: ~10 s a graph)")


def test_knn_compiles(sizes, gen):
    _family("knn")
    L, N, D, k = sizes.knn
    x = torch.randn(L, min(N, 4096), D, generator=gen).to(DEV)
    u = knn_mod.unit_rows(x)
    op = torch.compile(lambda q: knn_mod._knn_op(q, q, k, 0, True, "triton", 1 << 20, "tf32x3"), fullgraph=True)
    v, i = op(u)
    ve, ie = knn_mod._knn_op(u, u, k, 0, True, "triton", 1 << 20, "tf32x3")
    assert torch.equal(v, ve) and torch.equal(i, ie)
    # the public function (host-side checks: graph breaks), normalisation compiled by inductor
    vc, ic = torch.compile(lambda t: vtalign.cosine_knn(t, k, backend="triton"))(x)
    torch.testing.assert_close(vc, ve, rtol=0, atol=1e-6)
    x64 = unit64(x)
    assert_passed(neighbour_checks("compiled cosine_knn", x64, x64, vc, ic, k, COSINE["float32"], self_shift=0))


def test_overlap_compiles(sizes, gen):
    _family("overlap")
    La, Lb, N, k = sizes.overlap
    ia = torch.rand(La, N, 3 * k, generator=gen).argsort(-1)[..., :k].to(DEV)
    ib = torch.rand(Lb, N, 3 * k, generator=gen).argsort(-1)[..., :k].to(DEV)
    op = torch.compile(lambda a, b: overlap_mod._overlap_op(a, b, False, "triton"), fullgraph=True)
    assert torch.equal(op(ia, ib), overlap_mod._overlap_op(ia, ib, False, "triton"))
    got = torch.compile(lambda a, b: vtalign.knn_overlap(a, b, backend="triton"))(ia, ib)
    assert torch.equal(got, vtalign.knn_overlap(ia, ib, backend="triton"))


def _grads(fn, *inputs):
    xs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*xs)
    out.backward()
    return out.detach(), [x.grad for x in xs]


def _assert_same(got, want, *, exact: bool):
    (v, gs), (ve, ges) = got, want
    if exact:
        assert torch.equal(v, ve) and all(torch.equal(g, ge) for g, ge in zip(gs, ges))
        return
    torch.testing.assert_close(v, ve)
    for g, ge in zip(gs, ges):
        torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-6 * float(ge.abs().max()))


def _contrastive_inputs(sizes, gen):
    B, D = sizes.contrastive
    a, b = torch.randn(B, D, generator=gen).to(DEV), torch.randn(B, D, generator=gen).to(DEV)
    pos = ((torch.rand(B, B, generator=gen) < 4.0 / B) | torch.eye(B, dtype=torch.bool)).to(DEV)
    return a, b, pos


def test_infonce_op_compiles_fullgraph(sizes, gen):
    """The contrastive core (a custom op with registered autograd) in one fullgraph
    training step: unit rows in, the symmetric masked loss out, forward and backward."""
    _family("contrastive")
    a, b, pos = _contrastive_inputs(sizes, gen)
    s = torch.tensor(10.0, device=DEV)

    def step(x, y):
        r, c = cmod.infonce_parts(x, y, s, pos, backend="triton")
        return r.mean() + c.mean()

    ua, ub = knn_mod.unit_rows(a), knn_mod.unit_rows(b)
    _assert_same(_grads(torch.compile(step, fullgraph=True), ua, ub), _grads(step, ua, ub), exact=True)


def test_contrastive_losses_compile(sizes, gen):
    """The public losses compiled as a user would (graph breaks at the host-side checks),
    and the slot core in a fullgraph step."""
    _family("contrastive (public)")
    a, b, pos = _contrastive_inputs(sizes, gen)

    def loss(x, y):
        return vtalign.contrastive_loss(x, y, 10.0, positives=pos, backend="triton")

    _assert_same(_grads(torch.compile(loss), a, b), _grads(loss, a, b), exact=False)

    Bs, T, Ds = sizes.slot
    ta, vb = torch.randn(Bs, T, Ds, generator=gen).to(DEV), torch.randn(Bs, T, Ds, generator=gen).to(DEV)
    valid = (torch.rand(Bs, T, generator=gen) < 0.7).to(DEV)
    valid[:, 0] = True
    s = torch.tensor(10.0, device=DEV)

    def slot_step(x, y):
        r, c = cmod.slot_parts(x, y, valid, s, None, pool="lse", pool_temperature=0.1, backend="triton")
        return r.mean() + c.mean()

    uta, uvb = knn_mod.unit_rows(ta), knn_mod.unit_rows(vb)
    _assert_same(_grads(torch.compile(slot_step, fullgraph=True), uta, uvb), _grads(slot_step, uta, uvb),
                 exact=True)

    def slot_loss(x, y):
        return vtalign.slot_contrastive_loss(x, y, valid, 10.0, pool="max", backend="triton")

    _assert_same(_grads(torch.compile(slot_loss), ta, vb), _grads(slot_loss, ta, vb), exact=False)


def test_soft_dtw_compiles(sizes, gen):
    _family("soft_dtw")
    B, N, M, D = sizes.soft_dtw
    x = (torch.randn(B, N, D, generator=gen) / D ** 0.5).to(DEV)
    y = (torch.randn(B, M, D, generator=gen) / D ** 0.5).to(DEV)
    C = torch.cdist(x, y).square().reshape(B, 1, N, M).contiguous()
    g = torch.full((B,), 0.3, device=DEV)
    xl = torch.full((B,), N, dtype=torch.int64, device=DEV)
    yl = torch.full((B,), M, dtype=torch.int64, device=DEV)

    def values(c):
        return sd_mod.fwd_op(c, g, xl, yl, -1, "triton")[0].sum()

    _assert_same(_grads(torch.compile(values, fullgraph=True), C), _grads(values, C), exact=True)

    def loss(p, q):
        return vtalign.soft_dtw(p, q, 0.3, backend="triton").sum()

    _assert_same(_grads(torch.compile(loss), x, y), _grads(loss, x, y), exact=False)
