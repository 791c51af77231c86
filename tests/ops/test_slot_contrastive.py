"""slot_contrastive_loss (docs/design.md §3.3, §3.5) on every backend against the float64 reference."""
import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vtalign
from tests._device import ON_CUDA, device_for
from vtalign.nn import SlotContrastiveLoss
from vtalign.ops._common import has_cpp
from vtalign.reference import contrastive as ref

cmod = importlib.import_module("vtalign.ops.contrastive")
cops = importlib.import_module("vtalign.ops.contrastive.custom_ops")
chunked = importlib.import_module("vtalign.ops.contrastive.chunked_torch")

BACKENDS = (["cpp"] if has_cpp() else []) + ["torch", "triton"]
POOLS = ["mean", "max", "lse"]


def tol(backend: str) -> dict:
    if backend == "triton" and ON_CUDA:
        # 3xTF32 dots on a GPU: cosines within ~1e-6 instead of float32's ~1e-7 (see
        # test_contrastive.tol); the pooled logits inherit that error
        return dict(rtol=1e-4, atol=1e-5)
    return dict(rtol=1e-5, atol=1e-6)


def make(n, m, t, d, gen, p_valid=0.6):
    ta = torch.randn(n, t, d, generator=gen)
    vb = torch.randn(m, t, d, generator=gen)
    valid = torch.rand(m, t, generator=gen) < p_valid
    valid[torch.arange(m), torch.randint(0, t, (m,), generator=gen)] = True
    return ta, vb, valid


def compare(backend, ta, vb, valid, scale, *, workspace=cmod.DEFAULT_WORKSPACE, **kw):
    ta = ta.detach().requires_grad_(True)
    vb = vb.detach().requires_grad_(True)
    s = torch.tensor(float(scale), requires_grad=True)
    dev = device_for(backend)
    # moved inside the graph: the gradients arrive at the CPU leaves, next to the reference's
    kw_dev = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    out = vtalign.slot_contrastive_loss(ta.to(dev), vb.to(dev), valid.to(dev), s.to(dev), backend=backend,
                                        max_workspace_bytes=workspace, **kw_dev)
    assert out.device.type == dev.type
    out = out.cpu()
    want = ref.slot_contrastive_loss(ta, vb, valid, s, **kw)
    t = tol(backend)
    torch.testing.assert_close(out.double(), want, **t)
    w = torch.randn(out.shape, dtype=torch.float64) if out.dim() else torch.tensor(1.0, dtype=torch.float64)
    got = torch.autograd.grad((out.double() * w).sum(), (ta, vb, s))
    exp = torch.autograd.grad((want * w).sum(), (ta, vb, s))
    inv = 1.0 / float(torch.cat([ta.detach().norm(dim=-1).flatten(), vb.detach().norm(dim=-1).flatten()])
                      .min().clamp_min(1e-3))
    tg = dict(rtol=t["rtol"], atol=t["atol"] * max(1.0, inv) * max(1.0, float(scale)))
    if kw.get("pool") == "lse":  # d pool/d cos carries exp(cos/τ) factors: 1/τ more rounding
        tg["atol"] *= 1.0 / kw.get("pool_temperature", 0.1)
    for g1, g2, name in zip(got, exp, ("ta", "vb", "scale")):
        torch.testing.assert_close(g1.double(), g2.double(), msg=lambda m, name=name: f"grad {name}: {m}", **tg)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("n,t,d,rows_per_chunk", [(6, 3, 5, 2), (40, 2, 20, 16)])  # 40 > one 32-row tile
def test_each_pool(backend, pool, n, t, d, rows_per_chunk, gen):
    ta, vb, valid = make(n, n, t, d, gen)
    compare(backend, ta, vb, valid, 12.0, pool=pool, workspace=rows_per_chunk * n * (2 * t + 3) * 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pool", POOLS)
def test_multi_positive_rectangular_asymmetric(backend, pool, gen):
    ta, vb, valid = make(21, 7, 4, 16, gen)
    pos = torch.rand(21, 7, generator=gen) < 0.25
    pos[torch.arange(21), torch.arange(21) % 7] = True
    compare(backend, ta, vb, valid, 8.0, pool=pool, positives=pos, symmetric=False, pool_temperature=0.3)
    compare(backend, ta, vb, valid, 8.0, pool=pool, positives=pos, symmetric=True, reduction="sum")


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_frames_are_ignored(backend, gen):
    """Changing the features of invalid frames changes nothing, for every pool."""
    ta, vb, valid = make(10, 10, 5, 8, gen, p_valid=0.4)
    vb2 = vb.clone()
    vb2[~valid] = 50 * torch.randn(int((~valid).sum()), 8, generator=gen)
    ta, vb, vb2, valid = (t.to(device_for(backend)) for t in (ta, vb, vb2, valid))
    for pool in POOLS:
        l1 = vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool=pool, backend=backend)
        l2 = vtalign.slot_contrastive_loss(ta, vb2, valid, 10.0, pool=pool, backend=backend)
        torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
        vb2.requires_grad_(True)
        gv, = torch.autograd.grad(vtalign.slot_contrastive_loss(ta, vb2, valid, 10.0, pool=pool,
                                                                backend=backend), vb2)
        vb2 = vb2.detach()
        assert float(gv[~valid].abs().max()) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_order_and_scale_100(backend, gen):
    """mean <= lse <= max for the pooled similarity; scale 100 stays finite and exact."""
    ta, vb, valid = make(12, 12, 4, 8, gen)
    losses = {p: compare(backend, ta, vb, valid, 100.0, pool=p, reduction="none") for p in POOLS}
    for v in losses.values():
        assert bool(torch.isfinite(v).all())
    s = {p: ref.slot_logits(ta, vb, valid, pool=p) for p in POOLS}
    assert bool((s["mean"] <= s["lse"] + 1e-12).all() and (s["lse"] <= s["max"] + 1e-12).all())


def test_lse_pool_limits(gen):
    """τ → 0 approaches max pooling, τ → ∞ approaches mean pooling."""
    ta, vb, valid = make(8, 8, 4, 6, gen)
    def get(**k):
        return vtalign.slot_contrastive_loss(ta.double(), vb.double(), valid, 5.0, backend="torch", **k)

    torch.testing.assert_close(get(pool="lse", pool_temperature=1e-4), get(pool="max"), atol=1e-3, rtol=0)
    torch.testing.assert_close(get(pool="lse", pool_temperature=1e4), get(pool="mean"), atol=1e-3, rtol=0)


def test_single_frame_equals_plain_loss(gen):
    ta, vb, valid = make(9, 9, 1, 7, gen)
    plain = vtalign.contrastive_loss(ta[:, 0], vb[:, 0], 11.0, backend="torch")
    for pool in POOLS:
        torch.testing.assert_close(vtalign.slot_contrastive_loss(ta, vb, valid, 11.0, pool=pool, backend="torch"),
                                   plain)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    ta, vb, valid = make(5, 5, 2, 3, g)
    ta, vb = ta.double().requires_grad_(True), vb.double().requires_grad_(True)
    s = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    for pool in POOLS:  # max: distinct random cosines keep the argmax away from ties
        assert torch.autograd.gradcheck(
            lambda ta, vb, s, pool=pool: vtalign.slot_contrastive_loss(
                ta, vb, valid, s, pool=pool, pool_temperature=0.5, backend="torch",
                max_workspace_bytes=3 * 5 * 7 * 8),
            (ta, vb, s))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_opcheck(backend, gen):
    ta, vb, valid = make(17, 17, 2, 16, gen)
    dev = device_for(backend)
    ta = torch.nn.functional.normalize(ta, dim=-1).to(dev).requires_grad_(True)
    vb = torch.nn.functional.normalize(vb, dim=-1).to(dev).requires_grad_(True)
    valid = valid.to(dev)
    s = torch.tensor(5.0, device=dev, requires_grad=True)
    for pool in ("max", "lse"):
        torch.library.opcheck(cops.slot_op, (ta, vb, valid, s, None, 0, True, True, pool, 0.2, backend,
                                              1 << 20, "ieee"))
        _, _, rs, cs = cops.slot_op(ta, vb, valid, s, None, 0, True, True, pool, 0.2, backend, 1 << 20, "ieee")
        g = torch.rand(17, generator=gen).to(dev)
        torch.library.opcheck(cops.slot_backward_op, (ta.detach(), vb.detach(), valid, s.detach(), None, 0, True,
                                                       True, pool, 0.2, rs.detach(), cs.detach(), g, g.flip(0),
                                                       backend, 1 << 20, "ieee"))


def test_workspace_bounds_the_chunk(gen, monkeypatch):
    """The CPU path never forms more than one [chunk, M, T] slab, whatever the batch."""
    ta, vb, valid = make(40, 40, 3, 4, gen)
    seen = []
    real = chunked.pool_frames

    def spy(cos, *a, **k):
        seen.append(cos.shape)
        return real(cos, *a, **k)

    monkeypatch.setattr(chunked, "pool_frames", spy)
    ws = 40 * 3 * 4 * 60
    out = vtalign.slot_contrastive_loss(ta.requires_grad_(True), vb, valid, 5.0, pool="max", backend="torch",
                                        max_workspace_bytes=ws)
    out.backward()
    assert seen and max(s[1] for s in seen) == chunked.slot_chunk(40, 3, 4, ws) < 40
    torch.testing.assert_close(out.double(), ref.slot_contrastive_loss(ta, vb, valid, 5.0, pool="max"))


@given(n=st.integers(1, 20), t=st.integers(1, 5), d=st.integers(1, 12), pool=st.sampled_from(POOLS),
       sym=st.booleans(), seed=st.integers(0, 2**31 - 1), p_valid=st.floats(0.0, 1.0))
def test_hypothesis_torch(n, t, d, pool, sym, seed, p_valid):
    g = torch.Generator().manual_seed(seed)
    ta, vb, valid = make(n, n, t, d, g, p_valid)
    compare("torch", ta, vb, valid, 9.0, pool=pool, symmetric=sym, workspace=200)


@given(n=st.integers(1, 20), t=st.integers(1, 3), d=st.integers(1, 20), pool=st.sampled_from(POOLS),
       seed=st.integers(0, 2**31 - 1))
def test_hypothesis_triton(n, t, d, pool, seed):
    g = torch.Generator().manual_seed(seed)
    ta, vb, valid = make(n, n, t, d, g)
    compare("triton", ta, vb, valid, 9.0, pool=pool)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs(gen):
    ta, vb, valid = make(4, 4, 3, 5, gen)
    with pytest.raises(ValueError, match="video 2 has no valid frame"):
        v = valid.clone()
        v[2] = False
        dev = device_for("triton")  # on a GPU the check runs on device flags (one sync)
        vtalign.slot_contrastive_loss(ta.to(dev), vb.to(dev), v.to(dev), 10.0, backend="triton")
    with pytest.raises(ValueError, match="ta and vb must share"):
        vtalign.slot_contrastive_loss(ta, vb[:, :2], valid, 10.0)
    with pytest.raises(ValueError, match="valid must have shape"):
        vtalign.slot_contrastive_loss(ta, vb, valid[:, :2], 10.0)
    with pytest.raises(TypeError, match="valid must have dtype"):
        vtalign.slot_contrastive_loss(ta, vb, valid.float(), 10.0)
    with pytest.raises(ValueError, match="pool must be"):
        vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool="median")
    with pytest.raises(ValueError, match="pool_temperature"):
        vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, pool="lse", pool_temperature=0.0)
    with pytest.raises(ValueError, match="logit_scale"):
        vtalign.slot_contrastive_loss(ta, vb, valid, float("inf"))
    with pytest.raises(ValueError, match="ta must be 3-D"):
        vtalign.slot_contrastive_loss(ta[0], vb, valid, 10.0)
    bad = vb.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="vb contains NaN"):
        dev = device_for("triton")
        vtalign.slot_contrastive_loss(ta.to(dev), bad.to(dev), valid.to(dev), 10.0, backend="triton")
    pos = torch.eye(4, dtype=torch.bool)
    pos[0, 0] = False
    with pytest.raises(ValueError, match="row 0 has no positive"):
        vtalign.slot_contrastive_loss(ta, vb, valid, 10.0, positives=pos)


def test_module(gen):
    ta, vb, valid = make(6, 6, 3, 4, gen)
    mod = SlotContrastiveLoss(pool="lse", pool_temperature=0.2, backend="torch")
    loss = mod(ta, vb, valid)
    torch.testing.assert_close(loss.double(), ref.slot_contrastive_loss(ta, vb, valid, 1 / 0.07, pool="lse",
                                                                        pool_temperature=0.2), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert mod.logit_scale.grad is not None and torch.isfinite(mod.logit_scale.grad)
