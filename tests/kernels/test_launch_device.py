"""Every Triton launcher runs on its inputs' device, not on whichever CUDA device is current."""
import contextlib
import importlib
import inspect

import pytest
import torch

from vtalign.kernels import _launch

MODULES = ("knn", "overlap", "contrastive", "soft_dtw")


class FakeCuda1(torch.Tensor):
    """A CPU tensor that reports cuda:1, to see which device a launcher makes current."""

    @property
    def device(self):
        return torch.device("cuda", 1)


def _public_launchers():
    for name in MODULES:
        mod = importlib.import_module(f"vtalign.kernels.{name}")
        for fname, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ != mod.__name__ or fname.startswith("_"):
                continue
            params = inspect.signature(fn).parameters
            # a launcher takes tensors; configs, layouts and launch rules take sizes and dtypes
            first = next(iter(params.values()), None)
            if (fname in ("static_cases",) or fname.endswith(("_config", "_layout")) or fname == "config"
                    or (first is not None and first.annotation in (int, "int"))):
                continue
            yield f"{name}.{fname}", fn, params


def test_every_launcher_is_guarded():
    found = {qual for qual, _, _ in _public_launchers()}
    assert found, "no launchers discovered"
    assert found <= _launch.GUARDED, f"launchers without the device guard: {sorted(found - _launch.GUARDED)}"
    for qual, fn, _ in _public_launchers():
        assert hasattr(fn, "__wrapped__"), qual


def test_guard_makes_the_input_device_current(monkeypatch):
    entered = []

    @contextlib.contextmanager
    def fake_device(dev):
        entered.append(torch.device(dev))
        yield

    monkeypatch.setattr(torch.cuda, "device", fake_device)
    seen = []
    launch = _launch.on_input_device(lambda x, y=None: seen.append(entered[-1] if entered else None))
    launch(torch.zeros(2).as_subclass(FakeCuda1), torch.zeros(1))
    assert entered == [torch.device("cuda", 1)] and seen == [torch.device("cuda", 1)]
    launch(torch.zeros(2))  # CPU inputs: nothing is entered
    assert entered == [torch.device("cuda", 1)]
    with pytest.raises(ZeroDivisionError):  # the launcher's own error still surfaces
        _launch.on_input_device(lambda x: 1 / 0)(torch.zeros(1).as_subclass(FakeCuda1))
