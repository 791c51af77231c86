"""What every Triton launcher does before it launches: run on its inputs' device.

Triton launches on the *current* CUDA device. A tensor on `cuda:1` handed to a
launcher while `cuda:0` is current would launch on the wrong device (an illegal
access, or a silent cross-device read through unified addressing). Every public
launcher is wrapped in `on_input_device`, which makes the device of its first
tensor argument current for the launch.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)

# the input dtypes every Triton kernel takes (float64 is refused or rerouted by the ops)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# public launchers wrapped by `on_input_device` ("module.function"); the tests check
# that every launcher of every kernel module is here
GUARDED: set[str] = set()


def input_device(args, kwargs) -> torch.device | None:
    """The device of the first tensor argument (the launch's data; small side inputs such
    as a logit scale are moved to it by the launcher), or None without tensors."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device
    return None


def device_context(device: torch.device | None):
    """`torch.cuda.device(device)` for a CUDA device, else nothing to do."""
    if device is not None and device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def on_input_device(fn: F) -> F:
    """Decorator: run the launcher with its tensors' device current."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with device_context(input_device(args, kwargs)):
            return fn(*args, **kwargs)

    GUARDED.add(f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}")
    return wrapper  # type: ignore[return-value]
