"""Atomic file writes: a temporary file in the target folder, then os.replace.

A reader (or an interrupted run) never sees a half-written file; every writer in
vtalign (reports, feature files, training results, benchmark tables) uses these.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable

import torch


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call `write(tmp_path)`, then atomically move the result to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=ext + ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str, text: str) -> str:
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, w)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) or hasattr(obj, "tolist") and hasattr(obj, "ndim"):
        return _jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def write_json(path: str, obj: Any) -> str:
    return write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")
