"""Atomic file writes: a temporary file in the target folder, then os.replace.

A reader (or an interrupted run) never sees a half-written file; every writer in
vtalign (reports, feature files, training results, benchmark tables) uses these.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch


def _writable_folder(path: str, name: str, shown: str | None = None) -> None:
    """`path` (absolute) is an existing folder or can be created as one, and we may
    write there; errors show the path as `shown` (what the user wrote)."""
    shown = path if shown is None else shown
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        what = "is" if probe == path else f"lies below {probe!r}, which is"
        raise ValueError(f"{name}: {shown!r} {what} a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f" in {probe!r}, its nearest existing folder"
        raise PermissionError(f"{name}: {shown!r}: permission denied: cannot write{where}")


def _as_path(path, name: str) -> str:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__} {path!r}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(f"{name} must be a non-empty path, got {path!r}")
    return path


def check_out_dir(path, name: str = "out_dir") -> str:
    """Refuse, before any work, an output folder that cannot be used: one that is a
    file, lies below a file, or whose nearest existing folder is not writable.
    Nothing is created. Returns the path (a str)."""
    path = _as_path(path, name)
    _writable_folder(os.path.abspath(path), name, path)
    return path


def check_out_file(path, name: str = "path") -> str:
    """`check_out_dir` for a file to be written: not an existing folder, and its
    folder usable. Nothing is created. Returns the path (a str)."""
    path = _as_path(path, name)
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ValueError(f"{name}: {path!r} is a folder; give a file name")
    _writable_folder(os.path.dirname(full), name, os.path.dirname(path) or ".")
    return path


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
