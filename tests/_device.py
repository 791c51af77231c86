"""Where the tests run the Triton kernels: on the GPU when there is one, else in the
Triton interpreter on CPU tensors.

Decided once, when tests/conftest.py imports this module, before anything imports
vtalign: `@triton.jit` picks the interpreter or the compiler when a kernel is
defined, so TRITON_INTERPRET has to be settled before vtalign.kernels is imported.
VTALIGN_TEST_INTERPRET=1 (or TRITON_INTERPRET=1 set by the caller) keeps the
interpreter on a machine with CUDA, e.g. to compare the two on one machine.
"""
import os

import torch


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


ON_CUDA = torch.cuda.is_available() and not _flag("VTALIGN_TEST_INTERPRET") and not _flag("TRITON_INTERPRET")
if not ON_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

# the device of every backend="triton" test's inputs
TRITON_DEVICE = torch.device("cuda") if ON_CUDA else torch.device("cpu")


def on_triton_device(*ts):
    """The tensors moved to TRITON_DEVICE (differentiably: gradients flow back to the
    CPU originals); one tensor for one argument, else a tuple."""
    out = tuple(t.to(TRITON_DEVICE) if isinstance(t, torch.Tensor) else t for t in ts)
    return out[0] if len(out) == 1 else out


def cpu(*ts):
    """Results back on the CPU for comparison with the float64 reference (differentiably)."""
    out = tuple(t.cpu() if isinstance(t, torch.Tensor) else t for t in ts)
    return out[0] if len(out) == 1 else out


def device_for(backend: str) -> torch.device:
    """Where a test's inputs live for `backend`: TRITON_DEVICE for "triton", else the CPU."""
    return TRITON_DEVICE if backend == "triton" else torch.device("cpu")
