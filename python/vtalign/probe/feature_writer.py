"""Writing layer-wise features (`save_features`), atomically, in every format
`vtalign.probe.features` reads."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from vtalign._atomic import atomic_write, check_out_file
from vtalign._optional import require


def _layers_of(feats) -> tuple[bool, list[torch.Tensor]]:
    if isinstance(feats, torch.Tensor):
        if feats.dim() not in (2, 3) or feats.numel() == 0:
            raise ValueError(f"feats must be a non-empty [N, L, D] or [N, D] tensor, got shape {tuple(feats.shape)}")
        if not feats.is_floating_point():
            raise TypeError(f"feats must be floating point, got {feats.dtype}")
        return True, [feats]
    if isinstance(feats, (list, tuple)) and feats:
        for i, t in enumerate(feats):
            if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.numel() == 0:
                raise ValueError(f"feats[{i}] must be a non-empty [N, D] tensor")
            if not t.is_floating_point():
                raise TypeError(f"feats[{i}] must be floating point, got {t.dtype}")
        ns = sorted({t.shape[0] for t in feats})
        if len(ns) > 1:
            raise ValueError(f"feats: layers have different sample counts N {ns}")
        return False, list(feats)
    raise TypeError(f"feats must be a tensor or a non-empty list of tensors, got {type(feats).__name__}")


def save_features(path: str | os.PathLike, feats: torch.Tensor | Sequence[torch.Tensor], *,
                  key: str = "feats") -> None:
    """Write features atomically (nothing half-written is ever visible at `path`).

    Args:
        path: destination; the suffix picks the format (see the module docstring).
        feats: `[N, L, D]` / `[N, D]` tensor or a list of `[N, D_l]` tensors (`.npy`
            takes a single tensor only).

    Raises:
        MissingDependency: a `.safetensors` path without the safetensors package.
    """
    from vtalign.probe.features import _suffix  # the reader's suffix rule (imports this module)

    path = check_out_file(path, "path")
    ext = _suffix(path)
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    single, layers = _layers_of(feats)
    if ext == ".npy" and not single:
        raise ValueError(".npy holds one array; save a list of layers as .npz, .safetensors or .pt")
    layers = [t.detach().cpu().contiguous() for t in layers]
    # before atomic_write, so a missing package leaves no temporary file behind
    st_torch = require("safetensors.torch", "io", "writing .safetensors files") if ext == ".safetensors" else None

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            if ext in (".pt", ".pth"):
                torch.save({key: layers[0] if single else layers}, f)
            elif ext == ".npy":
                np.save(f, layers[0].numpy(), allow_pickle=False)
            elif ext == ".npz":
                arrays = {key: layers[0].numpy()} if single else {f"{key}.{i}": t.numpy()
                                                                  for i, t in enumerate(layers)}
                np.savez(f, **arrays)
            else:
                tensors = {key: layers[0]} if single else {f"{key}.{i}": t for i, t in enumerate(layers)}
                f.write(st_torch.save(tensors))
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
