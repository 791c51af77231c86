"""contrastive_loss (docs/design.md §3.3) on every backend against the float64 reference."""
import importlib
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vtalign
from tests._device import ON_CUDA, device_for
from vtalign.nn import ContrastiveLoss
from vtalign.ops._common import has_cpp
from vtalign.reference import contrastive as ref

cmod = importlib.import_module("vtalign.ops.contrastive")
cops = importlib.import_module("vtalign.ops.contrastive.custom_ops")
chunked = importlib.import_module("vtalign.ops.contrastive.chunked_torch")

BACKENDS = (["cpp"] if has_cpp() else []) + ["torch", "triton"]


def tol(backend: str, dtype: torch.dtype) -> dict:
    """fp32 against float64: exact float32 dots on the CPU and in the interpreter. On a GPU
    the float32 dots are 3xTF32 on the tensor cores: each product keeps ~22 of fp32's 24
    bits (the dropped lo·lo term and the split's residual are ~2^-22 relative), so a cosine
    is off by up to ~1e-6 rather than ~1e-7, and exp/log run on the fast approximate units;
    a 10x looser bound covers both (the gradient bound below grows with the scale)."""
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    if backend == "triton" and ON_CUDA:
        return dict(rtol=1e-4, atol=1e-5)
    return dict(rtol=1e-5, atol=1e-6)


def _on(dev, kw: dict) -> dict:
    return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


def random_positives(n: int, m: int, gen, p: float = 0.3, *, cols: bool = True) -> torch.Tensor:
    pos = torch.rand(n, m, generator=gen) < p
    pos[torch.arange(n), torch.arange(n) % m] = True
    if cols:
        pos[torch.arange(m) % n, torch.arange(m)] = True
    return pos


def compare(backend, a, b, scale, gen_grads=True, max_workspace_bytes=cmod.DEFAULT_WORKSPACE, **kw):
    a = a.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    s = torch.tensor(float(scale), dtype=a.dtype, requires_grad=True)
    dev = device_for(backend)
    # moved inside the graph: the gradients arrive at the CPU leaves, next to the reference's
    out = vtalign.contrastive_loss(a.to(dev), b.to(dev), s.to(dev), backend=backend,
                                   max_workspace_bytes=max_workspace_bytes, **_on(dev, kw))
    assert out.device.type == dev.type
    out = out.cpu()
    want = ref.contrastive_loss(a, b, s, **kw)
    t = tol(backend, a.dtype)
    assert out.dtype == (torch.float64 if a.dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(out.double(), want, **t)
    if gen_grads:
        w = torch.randn(out.shape, dtype=torch.float64) if out.dim() else torch.tensor(1.0, dtype=torch.float64)
        got = torch.autograd.grad((out.double() * w).sum(), (a, b, s))
        exp = torch.autograd.grad((want * w).sum(), (a, b, s))
        # the chain rule through x/|x| divides fp32 rounding by |x|: scale atol by 1/min|x|
        inv = 1.0 / float(torch.cat([a.detach().norm(dim=1), b.detach().norm(dim=1)]).min().clamp_min(1e-3))
        # float32 logits carry scale·eps error and the gradient scales with the scale
        # again, so the absolute tolerance grows with scale² (float64 is unaffected)
        tg = dict(rtol=t["rtol"], atol=t["atol"] * max(1.0, inv) * max(1.0, float(scale) / 10) ** 2)
        for g1, g2, name in zip(got, exp, "abs"):
            torch.testing.assert_close(g1.double(), g2.double(), msg=lambda m, name=name: f"grad {name}: {m}", **tg)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,d", [(5, 3), (70, 40), (33, 80)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_identity_positives(backend, n, d, symmetric, gen):
    a, b = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    # a small workspace makes the CPU path run several chunks (one row each when n = 5)
    compare(backend, a, b, 14.3, symmetric=symmetric, max_workspace_bytes=8 * n * 3 * 4 if n > 5 else 64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(backend, reduction, gen):
    a, b = torch.randn(20, 16, generator=gen), torch.randn(20, 16, generator=gen)
    out = compare(backend, a, b, 7.0, reduction=reduction)
    assert out.shape == ((20,) if reduction == "none" else ())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,m", [(24, 24), (30, 7)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_multi_positive(backend, n, m, symmetric, gen):
    """Several captions per video (rectangular) and false-negative masking (square)."""
    a, b = torch.randn(n, 20, generator=gen), torch.randn(m, 20, generator=gen)
    pos = random_positives(n, m, gen, cols=symmetric)
    compare(backend, a, b, 10.0, positives=pos, symmetric=symmetric, max_workspace_bytes=256)


def test_caption_groups_match_manual_formula(gen):
    """Ten captions per video: the row loss is −log Σ_{j∈P(i)} softmax_ij, checked by hand."""
    videos = torch.randn(4, 8, generator=gen)
    texts = videos.repeat_interleave(3, 0) + 0.5 * torch.randn(12, 8, generator=gen)
    pos = torch.arange(12)[:, None] // 3 == torch.arange(4)[None, :]
    out = vtalign.contrastive_loss(texts.double(), videos.double(), 5.0, positives=pos, symmetric=False,
                                   reduction="none", backend="torch")
    s = 5.0 * torch.nn.functional.normalize(texts.double(), dim=1) @ torch.nn.functional.normalize(
        videos.double(), dim=1).T
    manual = -torch.log((torch.softmax(s, 1) * pos).sum(1))
    torch.testing.assert_close(out, manual)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scale_100_no_overflow(backend, gen):
    a = torch.randn(40, 24, generator=gen)
    b = a + 0.05 * torch.randn(40, 24, generator=gen)
    pos = random_positives(40, 40, gen)
    out = compare(backend, a, b, 100.0, positives=pos)
    assert torch.isfinite(out)
    out = compare(backend, a, -b, 100.0)  # large losses: positives are the least similar
    assert torch.isfinite(out) and out > 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_clip_loss(backend, gen):
    """The symmetric identity-positive loss is CLIP's (CE(logits) + CE(logits.T)) / 2."""
    a, b = torch.randn(16, 12, generator=gen), torch.randn(16, 12, generator=gen)
    logits = 20.0 * torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    labels = torch.arange(16)
    clip = 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                  + torch.nn.functional.cross_entropy(logits.T, labels))
    dev = device_for(backend)
    got = vtalign.contrastive_loss(a.to(dev), b.to(dev), 20.0, backend=backend).cpu()
    torch.testing.assert_close(got, clip, **tol(backend, torch.float32))


def test_triton_fp16_within_twice_torch_error(gen, triton_device):
    """Low precision rule: error <= 2x the error of the same-dtype torch computation + atol.
    Holds on a GPU as in the interpreter: both round the unit rows to fp16 and the kernel
    accumulates in fp32, while the torch product also rounds the logits to fp16."""
    a, b = torch.randn(40, 32, generator=gen).half(), torch.randn(40, 32, generator=gen).half()
    pos = random_positives(40, 40, gen)
    want = ref.contrastive_loss(a, b, 12.0, positives=pos)
    dev = triton_device
    got = vtalign.contrastive_loss(a.to(dev), b.to(dev), 12.0, positives=pos.to(dev), backend="triton").cpu()
    an = torch.nn.functional.normalize(a.float(), dim=1).half()
    bn = torch.nn.functional.normalize(b.float(), dim=1).half()
    plain = ref.infonce_from_logits((12.0 * (an @ bn.T)).double(), pos)
    assert abs(float(got) - float(want)) <= 2 * abs(float(plain) - float(want)) + 2e-3
    a.requires_grad_(True)
    ga, = torch.autograd.grad(vtalign.contrastive_loss(a.to(dev), b.to(dev), 12.0, positives=pos.to(dev),
                                                       backend="triton"), a)
    assert ga.dtype == torch.float16
    a64 = a.detach().double().requires_grad_(True)
    gref, = torch.autograd.grad(ref.contrastive_loss(a64, b, 12.0, positives=pos), a64)
    torch.testing.assert_close(ga.double(), gref, rtol=0, atol=2e-3)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    pos = random_positives(6, 6, g)
    for p in (None, pos):
        for sym in (True, False):
            assert torch.autograd.gradcheck(
                lambda a, b, s, p=p, sym=sym: vtalign.contrastive_loss(a, b, s, positives=p, symmetric=sym,
                                                                       backend="torch", max_workspace_bytes=100),
                (a, b, s))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_opcheck(backend, gen):
    dev = device_for(backend)
    a = torch.nn.functional.normalize(torch.randn(18, 16, generator=gen), dim=1).to(dev).requires_grad_(True)
    b = torch.nn.functional.normalize(torch.randn(18, 16, generator=gen), dim=1).to(dev).requires_grad_(True)
    s = torch.tensor(5.0, device=dev, requires_grad=True)
    pos = random_positives(18, 18, gen).to(dev)
    torch.library.opcheck(cops.infonce_op, (a, b, s, None, 0, True, True, backend, 1 << 20, "ieee"))
    torch.library.opcheck(cops.infonce_op, (a, b[:11], s, pos[:, :11], 0, True, False, backend, 256, "ieee"))
    _, _, rs, cs = cops.infonce_op(a, b, s, pos, 0, True, True, backend, 1 << 20, "ieee")
    g = torch.rand(18, generator=gen).to(dev)
    torch.library.opcheck(cops.infonce_backward_op, (a.detach(), b.detach(), s.detach(), pos, 0, True, True,
                                                       rs.detach(), cs.detach(), g, g.flip(0), backend, 256, "ieee"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_distributed_building_block(backend, gen):
    """A shard's rows against the full batch (offset diagonal) equal the slice of the full problem."""
    dev = device_for(backend)
    a = torch.nn.functional.normalize(torch.randn(20, 16, generator=gen), dim=1).to(dev)
    b = torch.nn.functional.normalize(torch.randn(20, 16, generator=gen), dim=1).to(dev)
    s = torch.tensor(9.0, device=dev)
    full_r, full_c = cmod.infonce_parts(a, b, s, None, backend=backend)
    rows, _ = cmod.infonce_parts(a[5:12], b, s, None, offset=5, cols=False, backend=backend)
    _, cols = cmod.infonce_parts(a, b[5:12], s, None, offset=-5, rows=False, backend=backend)
    torch.testing.assert_close(rows, full_r[5:12], **tol(backend, torch.float32))
    torch.testing.assert_close(cols, full_c[5:12], **tol(backend, torch.float32))


@given(n=st.integers(1, 40), m=st.integers(1, 12), d=st.integers(1, 20), sym=st.booleans(),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.5, 100.0),
       workspace=st.integers(1, 4096))
def test_hypothesis_torch(n, m, d, sym, density, seed, scale, workspace):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
    pos = random_positives(n, m, g, density, cols=sym)
    compare("torch", a, b, scale, positives=pos, symmetric=sym, max_workspace_bytes=workspace)


@given(n=st.integers(1, 40), d=st.integers(1, 40), masked=st.booleans(), sym=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_hypothesis_triton(n, d, masked, sym, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    pos = random_positives(n, n, g, 0.2, cols=sym) if masked else None
    compare("triton", a, b, 30.0, positives=pos, symmetric=sym)


# ----------------------------------------------------------------------------- bad input
def _ok(gen):
    return torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), torch.tensor(-2.0),
                                   torch.tensor(float("nan"))])
def test_bad_logit_scale(scale, gen):
    a, b = _ok(gen)
    with pytest.raises(ValueError, match="logit_scale"):
        vtalign.contrastive_loss(a, b, scale)


def test_bad_logit_scale_type(gen):
    a, b = _ok(gen)
    with pytest.raises(TypeError, match="logit_scale"):
        vtalign.contrastive_loss(a, b, "10")
    with pytest.raises(ValueError, match="logit_scale"):
        vtalign.contrastive_loss(a, b, torch.tensor([10.0]))
    with pytest.raises(TypeError, match="logit_scale"):
        vtalign.contrastive_loss(a, b, True)


def test_bad_shapes(gen):
    a, b = _ok(gen)
    with pytest.raises(ValueError, match="feature size"):
        vtalign.contrastive_loss(a, torch.randn(6, 5), 10.0)
    with pytest.raises(ValueError, match="a must be 2-D"):
        vtalign.contrastive_loss(a[None], b, 10.0)
    with pytest.raises(ValueError, match="positives is required"):
        vtalign.contrastive_loss(a, b[:4], 10.0)
    with pytest.raises(ValueError, match="positives must have shape"):
        vtalign.contrastive_loss(a, b, 10.0, positives=torch.eye(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="positives must have dtype"):
        vtalign.contrastive_loss(a, b, 10.0, positives=torch.eye(6))
    with pytest.raises(TypeError, match="a must have a floating"):
        vtalign.contrastive_loss(a.long(), b, 10.0)
    with pytest.raises(ValueError, match="reduction"):
        vtalign.contrastive_loss(a, b, 10.0, reduction="avg")
    with pytest.raises(ValueError, match="reduction='none'"):
        vtalign.contrastive_loss(a, b[:4], 10.0, positives=torch.ones(6, 4, dtype=torch.bool), reduction="none")
    with pytest.raises(ValueError, match="empty"):
        vtalign.contrastive_loss(a[:0], b[:0], 10.0)


def test_row_without_positive(gen):
    a, b = _ok(gen)
    pos = torch.eye(6, dtype=torch.bool)
    pos[3, 3] = False
    dev = device_for("triton")  # on a GPU the mask's check runs on device flags (one sync)
    with pytest.raises(ValueError, match="row 3 has no positive"):
        vtalign.contrastive_loss(a.to(dev), b.to(dev), 10.0, positives=pos.to(dev), backend="triton")
    pos = torch.zeros(6, 6, dtype=torch.bool)
    pos[:, 0] = True
    with pytest.raises(ValueError, match="column 1 has no positive"):
        vtalign.contrastive_loss(a, b, 10.0, positives=pos)
    # a column without positives is fine when only rows are scored
    out = vtalign.contrastive_loss(a, b, 10.0, positives=pos, symmetric=False, backend="torch")
    torch.testing.assert_close(out.double(), ref.contrastive_loss(a, b, 10.0, positives=pos, symmetric=False))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(bad, gen):
    a, b = _ok(gen)
    b[2, 1] = bad
    dev = device_for("triton")
    with pytest.raises(ValueError, match="b contains (NaN|Inf) values .*row 2"):
        vtalign.contrastive_loss(a.to(dev), b.to(dev), 10.0, backend="triton")


def test_triton_refuses_float64(gen):
    a, b = _ok(gen)
    with pytest.raises(TypeError, match="float64"):
        vtalign.contrastive_loss(a.double().to(device_for("triton")), b.double().to(device_for("triton")), 10.0,
                                 backend="triton")


# ----------------------------------------------------------------------------- nn module
def test_module_scale_init_clamp_and_grad(gen):
    a, b = torch.randn(12, 8, generator=gen), torch.randn(12, 8, generator=gen)
    mod = ContrastiveLoss(backend="torch")
    assert math.isclose(float(mod.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    loss = mod(a, b)
    torch.testing.assert_close(loss.double(), ref.contrastive_loss(a, b, 1 / 0.07), rtol=1e-5, atol=1e-6)
    loss.backward()
    s = torch.tensor(1 / 0.07, dtype=torch.float64, requires_grad=True)
    ref.contrastive_loss(a, b, s).backward()
    # d/d(log s) = s · d/ds
    torch.testing.assert_close(mod.logit_scale.grad.double(), s.grad * s.detach(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        mod.logit_scale.fill_(7.0)
    assert math.isclose(float(mod.scale().detach()), 100.0, rel_tol=1e-6)
    mod.zero_grad()
    mod(a, b).backward()
    assert float(mod.logit_scale.grad) == 0.0  # past the cap the scale is held at 100
