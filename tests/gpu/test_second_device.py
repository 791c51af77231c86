"""A launch on cuda:1 while cuda:0 is current: every op runs on its inputs' device
(kernels/_launch.py), returns its results and gradients there, and leaves the current
device alone. Needs two CUDA devices by nature; tests/kernels/test_launch_device.py
checks the guard itself without any."""
import pytest
import torch

import vtalign
from tests._device import ON_CUDA
from tests.gpu.tolerances import COSINE, OVERLAP_PER_SAMPLE, SOFT_DTW, loss_tol, max_rel_error
from vtalign.reference import contrastive as ref_c
from vtalign.reference import knn as ref_knn
from vtalign.reference import soft_dtw as ref_sd

pytestmark = pytest.mark.gpu


@pytest.fixture
def second_device():
    if not ON_CUDA or torch.cuda.device_count() < 2:
        pytest.skip(f"needs two CUDA devices, this machine has {torch.cuda.device_count() if ON_CUDA else 0}")
    prev = torch.cuda.current_device()
    torch.cuda.set_device(0)
    yield torch.device("cuda", 1)
    assert torch.cuda.current_device() == 0, "an op changed the current device"
    torch.cuda.set_device(prev)


def _close(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """On cuda:1 and within `tol` of the float64 reference, relative to max(1, |want|)."""
    assert got.device == torch.device("cuda", 1), got.device
    err = float((got.detach().double().cpu() - want.detach().double().cpu()).abs().max())
    assert err <= tol * max(1.0, float(want.detach().abs().max())), (err, tol)


def _close_grad(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """A gradient: on cuda:1 and within `tol` relative to its largest entry."""
    assert got.device == torch.device("cuda", 1), got.device
    err = max_rel_error(got, want)
    assert err <= tol, (err, tol)


def test_every_op_on_the_second_device(second_device, gen):
    dev = second_device
    x = torch.randn(2, 300, 48, generator=gen)
    v, i = vtalign.cosine_knn(x.to(dev), 6, backend="triton")
    rv, _ = ref_knn.cosine_knn(x.double(), 6)
    _close(v, rv, COSINE["float32"])
    assert i.device == dev

    per = vtalign.knn_overlap(i, i.flip(0), reduce="none", backend="triton")
    _close(per, ref_knn.knn_overlap(i.cpu(), i.flip(0).cpu(), reduce="none"), OVERLAP_PER_SAMPLE)

    a, b = torch.randn(256, 64, generator=gen), torch.randn(256, 64, generator=gen)
    ad, bd = a.to(dev).requires_grad_(), b.to(dev).requires_grad_()
    loss = vtalign.contrastive_loss(ad, bd, 10.0, backend="triton")
    loss.backward()
    a64, b64 = a.double().requires_grad_(), b.double().requires_grad_()
    want = ref_c.contrastive_loss(a64, b64, 10.0)
    want.backward()
    tol = loss_tol("float32", 10.0)
    _close(loss, want, tol)
    _close_grad(ad.grad, a64.grad, tol)
    _close_grad(bd.grad, b64.grad, tol)

    ta, vb = torch.randn(64, 4, 32, generator=gen), torch.randn(64, 4, 32, generator=gen)
    valid = torch.rand(64, 4, generator=gen) < 0.7
    valid[:, 0] = True
    tad = ta.to(dev).requires_grad_()
    slot = vtalign.slot_contrastive_loss(tad, vb.to(dev), valid.to(dev), 10.0, pool="lse", backend="triton")
    slot.backward()
    ta64 = ta.double().requires_grad_()
    want = ref_c.slot_contrastive_loss(ta64, vb.double(), valid, 10.0, pool="lse")
    want.backward()
    _close(slot, want, tol)
    _close_grad(tad.grad, ta64.grad, tol / 0.1)  # the lse pool's frame weights: 1/τ more rounding

    s, q = torch.randn(3, 40, 8, generator=gen) / 8 ** 0.5, torch.randn(3, 30, 8, generator=gen) / 8 ** 0.5
    sd = s.to(dev).requires_grad_()
    val = vtalign.soft_dtw(sd, q.to(dev), 0.5, backend="triton")
    val.sum().backward()
    s64 = s.double().requires_grad_()
    want = ref_sd.soft_dtw(s64, q.double(), 0.5)
    want.sum().backward()
    _close(val, want, SOFT_DTW)
    _close_grad(sd.grad, s64.grad, SOFT_DTW)
    torch.cuda.synchronize(dev)  # an illegal access from a launch on the wrong device surfaces here
