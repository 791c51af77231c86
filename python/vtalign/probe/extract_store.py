"""Where `vtalign extract` puts its features: resumable per-batch parts, then one file per count.

Every sample batch's features for every count are saved as a part file (atomically,
`torch.load(weights_only=True)` to read back) in `<out>/.partial/<run key>/`; the run
key hashes everything that changes the features (model, options, sample ids, batch
size), so a rerun after an interruption reuses exactly the batches that finished
and never a part of another run. When every batch is there, each count's file is
assembled by streaming the parts one at a time into the final file, so neither the
extraction nor the assembly ever holds more than one batch of features:

- `.safetensors`: the header is written first, then each part's bytes;
- `.pt`: `torch.save` writes the zip archive with the storage's bytes skipped
  (`torch.serialization.skip_data`, over an untouched `torch.empty`), the parts
  are written into the storage record in place and its CRC-32 is patched in, so
  the result is an ordinary `torch.load`-able file (and a valid zip).

Names follow the public re-implementations: `<model>_pool-<avg|cls>_numframes-N.pt`
(text: `..._numcaptions-N.pt`), features under `feats` `[N, L, D]`, the sample ids
under `ids`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterable

import torch

from vtalign._atomic import atomic_write
from vtalign._optional import require

FORMATS = (".pt", ".safetensors")
NAME_RE = re.compile(r"^(?P<model>.+)_pool-(?P<pool>avg|cls)_num(?P<axis>frames|captions)-(?P<count>\d+)"
                     r"(?P<ext>\.pt|\.pth|\.npy|\.npz|\.safetensors)$")


def model_label(model: str) -> str:
    """The `<model>` part of a file name: a folder's own name, or a hub id with '/' as '_'."""
    model = model.rstrip("/\\")
    label = os.path.basename(model) if os.path.isdir(model) else model.replace("/", "_")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", label) or "model"


def feature_file_name(model: str, pool: str, axis: str, count: int, fmt: str = ".pt") -> str:
    """`<model>_pool-<pool>_num<axis>-<count><fmt>`, axis "frames" or "captions"."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return f"{model_label(model)}_pool-{pool}_num{axis}-{int(count)}{fmt}"


def parse_feature_name(path: str) -> dict | None:
    """{"model", "pool", "axis", "count"} from a file name that follows the naming, else None."""
    m = NAME_RE.match(os.path.basename(path))
    if m is None:
        return None
    return dict(model=m["model"], pool=m["pool"], axis=m["axis"], count=int(m["count"]))


def run_key(**parts) -> str:
    """A short SHA-256 of every option that changes the features (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class PartStore:
    """Per-(count, batch) part files of one extraction run under `<out_dir>/.partial/<key>/`."""

    def __init__(self, out_dir: str, key: str):
        self.dir = os.path.join(out_dir, ".partial", key)

    def _path(self, count: int, start: int) -> str:
        return os.path.join(self.dir, f"n{count}-b{start:09d}.pt")

    def load(self, count: int, start: int, rows: int) -> torch.Tensor | None:
        """The saved part, or None when it is missing or unreadable (it is then recomputed)."""
        path = self._path(count, start)
        if not os.path.exists(path):
            return None
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)["feats"]
        except Exception:  # a part we cannot trust is recomputed, never used
            return None
        return t if isinstance(t, torch.Tensor) and t.dim() == 3 and t.shape[0] == rows else None

    def has(self, count: int, start: int, rows: int) -> bool:
        return self.load(count, start, rows) is not None

    def save(self, count: int, start: int, feats: torch.Tensor) -> None:
        t = feats.detach().to("cpu", torch.float32).contiguous()
        atomic_write(self._path(count, start), lambda tmp: torch.save({"feats": t}, tmp))

    def parts(self, count: int, starts: list[int], sizes: list[int]) -> Iterable[torch.Tensor]:
        for s, r in zip(starts, sizes):
            t = self.load(count, s, r)
            if t is None:
                raise RuntimeError(f"part {self._path(count, s)} vanished during assembly; rerun to redo it")
            yield t

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        parent = os.path.dirname(self.dir)
        if os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


def _write_safetensors(tmp: str, parts: Iterable[torch.Tensor], shape: tuple[int, int, int],
                       meta: dict[str, str]) -> None:
    n_bytes = shape[0] * shape[1] * shape[2] * 4
    header = {"__metadata__": meta, "feats": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, n_bytes]}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data to 8 bytes
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in parts:
            f.write(t.numpy().tobytes())
        f.flush()
        os.fsync(f.fileno())


def _storage_record(path: str) -> tuple[int, int, int]:
    """(data offset, local header offset, central directory entry offset) of the one
    tensor storage record (`*/data/0`) of a torch zip archive."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
        start_dir = z.start_dir
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        data = info.header_offset + 30 + name_len + extra_len
        f.seek(start_dir)
        while True:  # walk the central directory to this record's entry
            entry = f.tell()
            head = f.read(46)
            if head[:4] != b"PK\x01\x02":
                raise ValueError(f"{path}: no central directory entry for {info.filename}")
            n, e, c = struct.unpack("<HHH", head[28:34])
            name = f.read(n).decode()
            f.seek(e + c, os.SEEK_CUR)
            if name == info.filename:
                return data, info.header_offset, entry


def _write_pt(tmp: str, parts: Iterable[torch.Tensor], shape: tuple[int, int, int], ids: list[str],
              meta: dict[str, str]) -> None:
    if not hasattr(torch.serialization, "skip_data"):  # torch < 2.6: the whole tensor in memory
        torch.save({"feats": torch.cat(list(parts)), "ids": ids, "meta": meta}, tmp)
        return
    empty = torch.empty(shape, dtype=torch.float32)  # never touched: no memory is committed for it
    with torch.serialization.skip_data():
        torch.save({"feats": empty, "ids": ids, "meta": meta}, tmp)
    del empty
    data, local, central = _storage_record(tmp)
    crc = 0
    with open(tmp, "r+b") as f:
        f.seek(data)
        for t in parts:
            b = t.numpy().tobytes()
            crc = zlib.crc32(b, crc)
            f.write(b)
        for at in (local + 14, central + 16):  # the CRC-32 fields of the local and central headers
            f.seek(at)
            f.write(struct.pack("<I", crc))
        f.flush()
        os.fsync(f.fileno())


def write_feature_file(path: str, parts: Iterable[torch.Tensor], shape: tuple[int, int, int], ids: list[str],
                       meta: dict[str, str]) -> str:
    """Stream `[rows, L, D]` float32 parts (in sample order) into one `[N, L, D]` file,
    atomically; `ids` and `meta` (str -> str) are stored beside `feats`."""
    ext = os.path.splitext(path)[1]
    if ext == ".safetensors":
        require("safetensors", "io", "writing .safetensors files")
        full = dict(meta, ids=json.dumps(ids))
        return atomic_write(path, lambda tmp: _write_safetensors(tmp, parts, shape, full))
    return atomic_write(path, lambda tmp: _write_pt(tmp, parts, shape, ids, meta))


def feature_record(path: str) -> tuple[list[str] | None, dict[str, str] | None]:
    """(sample ids, metadata) a feature file records; (None, None) for a missing or
    unreadable file, None for whichever it does not record."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        return None, None
    try:
        if ext in (".pt", ".pth"):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
                obj = torch.load(path, map_location="cpu", weights_only=True)
            obj = obj if isinstance(obj, dict) else {}
            ids, meta = obj.get("ids"), obj.get("meta")
        elif ext == ".safetensors":
            st = require("safetensors", "io", "reading .safetensors files")
            with st.safe_open(path, framework="pt") as f:
                meta = dict(f.metadata() or {})
            raw = meta.pop("ids", None)
            ids = json.loads(raw) if raw else None
        else:
            return None, None
    except Exception:  # unreadable: the caller treats it as absent (and open_features names the problem)
        return None, None
    ids = [str(i) for i in ids] if isinstance(ids, list) else None
    meta = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None
    return ids, meta


def feature_ids(path: str) -> list[str] | None:
    """The sample ids a feature file records (`ids`), or None when it records none."""
    return feature_record(path)[0]
