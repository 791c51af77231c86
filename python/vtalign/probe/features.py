"""Layer-wise features in and out.

Formats (by file suffix):
- `.pt` / `.pth`: platonic-rep's files, a dict whose `"feats"` is a `[N, L, D]`
  tensor or a list of `[N, D_l]` tensors. Read with
  `torch.load(..., weights_only=True)` only: a file that needs arbitrary Python
  objects is refused, never unpickled. Zip-format files are memory-mapped.
- `.npy`: one `[N, L, D]` (or `[N, D]`) array, memory-mapped (`mmap_mode="r"`).
- `.npz`: `"feats"` `[N, L, D]`, or per-layer `"feats.0"`, `"feats.1"`, ...;
  members are read one at a time (zip members cannot be memory-mapped).
- `.safetensors`: the same keys, read lazily through `safe_open` (the package
  comes with `pip install "vtalign[io]"`).

`open_features` returns a `FeatureFile` that reads one layer at a time, so a
feature set larger than RAM streams layer by layer through the probe (pass it
straight to `layerwise_alignment`). `save_features` writes atomically: a
temporary file in the target directory, flushed, then `os.replace`.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vtalign._optional import require
from vtalign.ops._common import check_finite

SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".safetensors")
_FLOAT_NP = (np.float16, np.float32, np.float64)
_FLOAT_TORCH = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# safetensors' dtype codes -> the torch dtype name (an error message names the file's
# own dtype; an unknown code is reported as the code itself)
_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
                       "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                       "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64"}


def _suffix(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in SUFFIXES:
        raise ValueError(f"unsupported feature file {path!r}: the suffix must be one of {SUFFIXES}")
    return ext


def _to_tensor(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    arr = np.ascontiguousarray(a)
    if not arr.flags.writeable:  # a read-only memory map: copy this layer only
        arr = arr.copy()
    return torch.from_numpy(arr)


class FeatureFile(Sequence):
    """A feature file opened for layer-by-layer reading.

    Attributes:
        path: the file.
        n: number of samples N.
        dims: per-layer widths `[D_0, ..., D_{L-1}]`.
        stacked: True when the file holds one `[N, L, D]` array (platonic-rep layout).

    `ff[i]` / `ff.layer(i)` reads layer i as a contiguous `[N, D_i]` tensor (one
    layer in memory); `ff.load()` reads everything (`[N, L, D]` or a list).
    """

    def __init__(self, path: str, sources: list, stacked: bool, closer=None, single: bool = False):
        self.path = str(path)
        self.single = single  # one [N, D] array stored under the key itself
        self._sources = sources  # stacked: [array-like [N, L, D]]; else one array-like per layer
        self.stacked = stacked
        self._closer = closer
        shapes = [tuple(s.shape) for s in sources]
        if stacked:
            self.n, L, d = shapes[0]
            self.dims = [d] * L
        else:
            self.n = shapes[0][0]
            self.dims = [s[1] for s in shapes]

    def __len__(self) -> int:
        return len(self.dims)

    @property
    def num_layers(self) -> int:
        return len(self.dims)

    def layer(self, i: int) -> torch.Tensor:
        """Layer i as a `[N, D_i]` tensor, checked for NaN/Inf (the error names the layer)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path} has {len(self)} layers, asked for layer {i}")
        i %= len(self)
        src = self._open_sources()[0 if self.stacked else i]
        # i:i+1 rather than i: every backing store (numpy memmap, torch, safetensors
        # slices) supports a range on the middle axis, and it reads only that layer.
        t = _to_tensor(src[:, i:i + 1, :] if self.stacked else src[:])
        if self.stacked:
            t = t[:, 0, :]
        if not t.is_contiguous():
            t = t.contiguous()
        check_finite(f"{self.path} layer {i}", t)
        return t

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Samples start:stop of every layer of a stacked file, `[c, L, D]` (contiguous on disk)."""
        if not self.stacked:
            raise ValueError(f"{self.path} stores layers separately; read them with layer(i)")
        return _to_tensor(self._open_sources()[0][start:stop])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.layer(j) for j in range(*i.indices(len(self)))]
        return self.layer(i)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self.layer(i)

    def validate(self) -> None:
        """Read every layer once, so bad values fail before any computation."""
        for i in range(len(self)):
            self.layer(i)

    def load(self) -> torch.Tensor | list[torch.Tensor]:
        """Everything in memory: `[N, L, D]` for a stacked file, else a list of layers."""
        if self.stacked:
            return torch.stack([self.layer(i) for i in range(len(self))], dim=1)
        return [self.layer(i) for i in range(len(self))]

    def _open_sources(self) -> list:
        if self._sources is None:
            raise ValueError(f"{self.path} is closed; open it again with open_features")
        return self._sources

    def close(self) -> None:
        """Drop the handle and the (memory-mapped) arrays, so their pages are released."""
        if self._closer is not None:
            self._closer()
            self._closer = None
        self._sources = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"FeatureFile({self.path!r}, N={self.n}, dims={self.dims}, stacked={self.stacked})"


def _check_arrays(path: str, key: str, sources: list, stacked: bool) -> None:
    for j, s in enumerate(sources):
        name = key if stacked else f"{key}.{j}"
        dt = s.dtype
        if isinstance(dt, torch.dtype):
            ok = dt in _FLOAT_TORCH
        elif isinstance(dt, str):  # a safetensors code torch has no dtype for
            ok = False
        else:
            ok = np.dtype(dt).type in _FLOAT_NP
        if not ok:
            raise TypeError(f"{path}: {name!r} must hold floating-point features, got dtype {dt}")
        want = 3 if stacked else 2
        if len(s.shape) != want:
            raise ValueError(f"{path}: {name!r} must be {'[N, L, D]' if stacked else '[N, D]'}, "
                             f"got shape {tuple(s.shape)}")
        if 0 in tuple(s.shape):
            raise ValueError(f"{path}: {name!r} is empty (shape {tuple(s.shape)})")
    ns = sorted({int(s.shape[0]) for s in sources})
    if len(ns) > 1:
        raise ValueError(f"{path}: layers have different sample counts N {ns}")


def _layer_keys(keys, key: str) -> list[str]:
    prefix = key + "."
    idx = sorted(int(k[len(prefix):]) for k in keys if k.startswith(prefix) and k[len(prefix):].isdigit())
    if idx and idx != list(range(len(idx))):
        raise ValueError(f"per-layer keys {key}.0 ... must be consecutive, found indices {idx}")
    return [f"{key}.{i}" for i in idx]


def _missing(path: str, key: str, keys) -> ValueError:
    return ValueError(f"{path}: no {key!r} (an [N, L, D] array) or {key}.0, {key}.1, ... per-layer "
                      f"entries; found keys {sorted(map(str, keys))}")


def _open_pt(path: str, key: str, mmap: bool) -> FeatureFile:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused to load -- it holds Python objects other than tensors and "
                         f"plain containers, and vtalign never unpickles those (weights_only=True)") from exc
    except RuntimeError as exc:
        if mmap and "mmap" in str(exc).lower():  # a legacy (non-zip) file cannot be memory-mapped
            return _open_pt(path, key, False)
        raise ValueError(f"{path}: not a readable PyTorch file (truncated or corrupt): {exc}") from exc
    except (EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable PyTorch file (truncated or corrupt): {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict with a {key!r} entry (platonic-rep layout), "
                         f"got {type(obj).__name__}")
    if key not in obj:
        raise _missing(path, key, obj.keys())
    feats = obj[key]
    if isinstance(feats, torch.Tensor):
        srcs, stacked = [feats], feats.dim() == 3
    elif isinstance(feats, (list, tuple)) and feats and all(isinstance(t, torch.Tensor) for t in feats):
        srcs, stacked = list(feats), False
    else:
        raise ValueError(f"{path}: {key!r} must be a tensor [N, L, D] or a non-empty list of [N, D_l] "
                         f"tensors, got {type(feats).__name__}")
    _check_arrays(path, key, srcs, stacked)
    return FeatureFile(path, srcs, stacked, single=isinstance(feats, torch.Tensor) and not stacked)


def _open_npy(path: str, key: str, mmap: bool) -> FeatureFile:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise ValueError(f"{path}: holds Python objects; refusing to unpickle it") from exc
        raise ValueError(f"{path}: not a readable .npy file (truncated or corrupt): {exc}") from exc
    except (EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npy file (truncated or corrupt): {exc}") from exc
    stacked = arr.ndim == 3
    _check_arrays(path, key, [arr], stacked)
    return FeatureFile(path, [arr], stacked, single=not stacked)


def _open_npz(path: str, key: str) -> FeatureFile:
    try:
        z = np.load(path, allow_pickle=False)
        names = list(z.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt): {exc}") from exc

    class _Member:  # reads the member only when sliced, so layers stream one by one
        def __init__(self, name):
            self.name = name
            with z.zip.open(name + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                self.shape, _, self.dtype = read(f)

        def __getitem__(self, item):
            try:
                return z[self.name][item]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: member {self.name!r} is truncated or corrupt: {exc}") from exc

    try:
        if key in names:
            srcs, stacked = [_Member(key)], True
        else:
            layer_names = _layer_keys(names, key)
            if not layer_names:
                raise _missing(path, key, names)
            srcs, stacked = [_Member(k) for k in layer_names], False
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt): {exc}") from exc
    single = stacked and len(srcs[0].shape) == 2
    stacked = stacked and not single
    _check_arrays(path, key, srcs, stacked)
    return FeatureFile(path, srcs, stacked, closer=z.close, single=single)


def _open_safetensors(path: str, key: str) -> FeatureFile:
    st = require("safetensors", "io", "reading .safetensors files")
    try:
        f = st.safe_open(path, framework="pt")
        names = list(f.keys())
    except (st.SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .safetensors file (truncated or corrupt): {exc}") from exc

    class _Slot:
        def __init__(self, name):
            self.name = name
            self._s = f.get_slice(name)
            self.shape = tuple(self._s.get_shape())
            code = self._s.get_dtype()
            # the file's real dtype: a torch dtype where torch has one, else its safetensors code
            self.dtype = getattr(torch, _SAFETENSORS_DTYPES.get(code, ""), None) or code

        def __getitem__(self, item):
            return self._s[item]

    if key in names:
        srcs, stacked = [_Slot(key)], True
    else:
        layer_names = _layer_keys(names, key)
        if not layer_names:
            raise _missing(path, key, names)
        srcs, stacked = [_Slot(k) for k in layer_names], False
    single = stacked and len(srcs[0].shape) == 2
    stacked = stacked and not single
    _check_arrays(path, key, srcs, stacked)
    return FeatureFile(path, srcs, stacked, single=single)


def open_features(path: str | os.PathLike, *, key: str = "feats", mmap: bool = True) -> FeatureFile:
    """Open a feature file for layer-by-layer reading (see the module docstring).

    Args:
        path: a `.pt`, `.pth`, `.npy`, `.npz` or `.safetensors` file.
        key: the entry holding the features (platonic-rep: "feats").
        mmap: memory-map where the format allows it (`.pt` zip files, `.npy`).

    Raises:
        FileNotFoundError, or ValueError / TypeError naming the file for an empty,
        truncated or corrupt file, a missing key, wrong shapes or dtypes, or
        layers with different N; MissingDependency for a `.safetensors` file
        without the safetensors package (`pip install "vtalign[io]"`).
    """
    path = os.fspath(path)
    ext = _suffix(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such feature file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a feature file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")
    if ext in (".pt", ".pth"):
        return _open_pt(path, key, mmap)
    if ext == ".npy":
        return _open_npy(path, key, mmap)
    if ext == ".npz":
        return _open_npz(path, key)
    return _open_safetensors(path, key)


def load_features(path: str | os.PathLike, *, key: str = "feats",
                  mmap: bool = True) -> torch.Tensor | list[torch.Tensor]:
    """Read a whole feature file: a `[N, L, D]` tensor (platonic-rep layout) or a
    list of per-layer `[N, D_l]` tensors. Same checks as `open_features`."""
    with open_features(path, key=key, mmap=mmap) as ff:
        return ff.layer(0) if ff.single else ff.load()


# the writer lives in its own file; this keeps one import path for reading and writing
from vtalign.probe.feature_writer import save_features  # noqa: E402, F401
