"""Test-wide setup. Whether the Triton kernels run on the GPU or in the interpreter is
decided in tests/_device.py, imported here before anything imports vtalign: a kernel
picks the interpreter when it is defined (docs/design.md §4)."""
import os
import types

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from tests._device import ON_CUDA, TRITON_DEVICE  # noqa: I001  (must precede every vtalign import)

# CI draws the same examples every run (derandomize), so a run is reproducible;
# HYPOTHESIS_PROFILE=thorough explores with fresh random draws.
settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _runs_triton(item) -> bool:
    """A test of the Triton kernels: "triton" in its id (a backend="triton" parameter,
    its name or its file's), or its module imports from vtalign.kernels (tests that
    call the launchers directly)."""
    if "triton" in item.nodeid.lower():
        return True
    mod = getattr(item, "module", None)
    for value in vars(mod).values() if mod is not None else ():
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and name.startswith("vtalign.kernels"):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    # `-m triton` picks what tools/gpu_check.sh runs on the GPU from tests/ops and tests/kernels
    for item in items:
        if _runs_triton(item):
            item.add_marker(pytest.mark.triton)


def pytest_report_header(config):
    where = "CUDA (compiled kernels)" if ON_CUDA else "CPU (TRITON_INTERPRET=1)"
    return f"vtalign: backend='triton' tests run on {where}"


@pytest.fixture
def gen():
    """A fresh, seeded generator per test: tests repeat exactly."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def triton_device() -> torch.device:
    """Where backend="triton" inputs live: "cuda" with a GPU (the real kernels), else
    "cpu" (the interpreter)."""
    return TRITON_DEVICE
