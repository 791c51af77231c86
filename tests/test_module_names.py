"""Every module is reachable under its own name: no package binds a function (or any
other object) over the name of one of its submodules, and the public export list is
one list."""
from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import vtalign

# modules whose import needs an optional extra, a GPU toolchain or a test-time fixture
SKIP_PREFIXES = ("vtalign.benchmarks.", "vtalign.kernels.")


def _packages():
    out = [vtalign]
    for info in pkgutil.walk_packages(vtalign.__path__, "vtalign."):
        if info.ispkg and not info.name.startswith(SKIP_PREFIXES):
            out.append(importlib.import_module(info.name))
    return out


@pytest.mark.parametrize("pkg", _packages(), ids=lambda p: p.__name__)
def test_no_submodule_is_shadowed(pkg):
    for info in pkgutil.iter_modules(pkg.__path__):
        full = f"{pkg.__name__}.{info.name}"
        if full.startswith(SKIP_PREFIXES) or full == "vtalign.cli.__main__":
            continue
        mod = importlib.import_module(full)
        bound = getattr(pkg, info.name)
        assert isinstance(bound, types.ModuleType) and bound is mod, (
            f"{pkg.__name__}.{info.name} is {bound!r}, not the module {full}")


def test_one_export_list():
    assert set(vtalign.__all__) == set(vtalign.ops.__all__) | {"knn", "soft_dtw", "__version__"}
    for name in vtalign.__all__:
        assert getattr(vtalign, name) is not None, name
    assert vtalign.knn is vtalign.ops.knn.knn and vtalign.soft_dtw is vtalign.ops.soft_dtw.soft_dtw
