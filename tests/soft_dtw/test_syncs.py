"""The soft-DTW ops read device values back to the host once per call: every value check
(finite inputs, γ > 0, lengths in range, band wide enough for every pair) is a
device-side flag of the call's `DeferredChecks`, read with one sync before any kernel;
the lengths stay on the data's device. Each sync would stall a CUDA stream and rule out
CUDA-graph capture.

Counted on the CPU: the Python-level ways a tensor's value reaches the host (item,
tolist, bool/float/int/index conversions, cpu, numpy) are wrapped while an op runs;
a GPU run would sync at exactly these calls. The Triton launchers' own work (in the
interpreter, all of it host work) is not counted: they read nothing back on a GPU.
"""
import contextlib
import importlib
import os

import pytest
import torch

import vtalign
from vtalign.reference import soft_dtw as ref

ops = importlib.import_module("vtalign.ops.soft_dtw")
checks = importlib.import_module("vtalign.ops.soft_dtw.checks")
# backend="triton" inputs: CPU tensors in the interpreter, else the GPU's
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
TRITON_DEVICE = torch.device("cpu") if INTERPRETED else torch.device("cuda")
READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


@contextlib.contextmanager
def counting_reads(monkeypatch):
    """Yields the list of reads made inside the block (outside the Triton launchers)."""
    reads, paused = [], [False]
    for name in READS:
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, _name=name, **kw):
            if not paused[0]:
                reads.append(_name)
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    tk = importlib.import_module("vtalign.kernels.soft_dtw")
    for fn in ("soft_dtw_forward", "soft_dtw_backward"):
        real = getattr(tk, fn)

        def launcher(*a, _real=real, **kw):
            paused[0] = True
            try:
                return _real(*a, **kw)
            finally:
                paused[0] = False

        monkeypatch.setattr(tk, fn, launcher)
    yield reads


def test_the_counter_sees_a_read(monkeypatch):
    with counting_reads(monkeypatch) as reads:
        torch.tensor(1.0).item()
        if torch.tensor(True):
            pass
        torch.ones(2).tolist()
    assert reads == ["item", "__bool__", "tolist"]


def _inputs(gen):
    B, N, M, D = 3, 5, 6, 4
    x = torch.randn(B, N, D, generator=gen)
    y = torch.randn(B, M, D, generator=gen)
    xl, yl = torch.tensor([5, 3, 4]), torch.tensor([6, 2, 5])
    return x, y, xl, yl


CALLS = {
    "soft_dtw_cost": lambda x, y, xl, yl, g, be: vtalign.soft_dtw_cost(
        torch.cdist(x, y), g, bandwidth=3, x_lengths=xl, y_lengths=yl, backend=be),
    "soft_dtw": lambda x, y, xl, yl, g, be: vtalign.soft_dtw(
        x, y, g, bandwidth=3, x_lengths=xl, y_lengths=yl, normalize=True, backend=be),
    "soft_dtw_pairwise": lambda x, y, xl, yl, g, be: vtalign.soft_dtw_pairwise(
        x, y, g[0], bandwidth=3, x_lengths=xl, y_lengths=yl, backend=be),
    "soft_dtw_alignment": lambda x, y, xl, yl, g, be: vtalign.soft_dtw_alignment(
        x, y, g, bandwidth=3, x_lengths=xl, y_lengths=yl, backend=be),
    "s2dtw": lambda x, y, xl, yl, g, be: vtalign.s2dtw(x, y, gamma=g, x_lengths=xl, y_lengths=yl, backend=be),
    "s2dtw_pairwise": lambda x, y, xl, yl, g, be: vtalign.s2dtw_pairwise(
        x, y, gamma=g[0], x_lengths=xl, y_lengths=yl, backend=be),
}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("call", list(CALLS))
def test_one_host_read_per_call(monkeypatch, gen, call, backend):
    dev = TRITON_DEVICE if backend == "triton" else torch.device("cpu")
    x, y, xl, yl = (t.to(dev) for t in _inputs(gen))
    x.requires_grad_()
    g = torch.tensor([0.5, 0.2, 1.0], device=dev, requires_grad=True)
    with counting_reads(monkeypatch) as reads:
        out = CALLS[call](x, y, xl, yl, g, backend)
        forward = list(reads)
        if out.requires_grad:
            out.sum().backward()
    assert forward == ["tolist"], forward  # DeferredChecks.run: all flags at once
    assert reads == forward, reads  # the backward reads nothing


def test_min_bandwidths_on_the_device_match_the_closed_form():
    n, m = torch.meshgrid(torch.arange(1, 41), torch.arange(1, 41), indexing="ij")
    got = checks.min_bandwidths(n.reshape(-1), m.reshape(-1))
    want = torch.tensor([ref.min_bandwidth(int(a), int(b)) for a, b in zip(n.reshape(-1), m.reshape(-1))])
    assert torch.equal(got, want)


@pytest.mark.parametrize("kw,match", [
    (dict(x_lengths=torch.tensor([5, 0, 4])), r"x_lengths\[1\] = 0 is outside \[1, 5\] \(the padded length\)"),
    (dict(y_lengths=torch.tensor([6, 7, 4])), r"y_lengths\[1\] = 7 is outside \[1, 6\]"),
    (dict(gamma=torch.tensor([0.5, -1.0, 1.0])), r"gamma must be finite and > 0, got \[0.5, -1.0, 1.0\]"),
    (dict(bandwidth=0, x_lengths=torch.tensor([5, 2, 5]), y_lengths=torch.tensor([5, 5, 5])),
     r"bandwidth=0 is narrower than the minimum 2 for pair 1 with lengths \(n=2, m=5\)"),
    (dict(C_nan=True), r"C contains NaN values \(first at index \(2, 1, 3\)\)"),
])
def test_deferred_checks_keep_their_messages(gen, kw, match):
    C = torch.rand(3, 5, 6, generator=gen)
    if kw.pop("C_nan", False):
        C[2, 1, 3] = float("nan")
    gamma = kw.pop("gamma", 0.5)
    with pytest.raises(ValueError, match=match):
        vtalign.soft_dtw_cost(C, gamma, backend="torch", **kw)


def test_the_first_failing_check_in_call_order_raises(gen):
    # a bad length and a band too narrow for the (bad) pair: the length's check, added
    # first, raises, never the band's computed from a length of 0
    C = torch.rand(2, 5, 6, generator=gen)
    with pytest.raises(ValueError, match=r"x_lengths\[0\] = 0"):
        vtalign.soft_dtw_cost(C, 0.5, bandwidth=0, x_lengths=torch.tensor([0, 5]), backend="torch")
