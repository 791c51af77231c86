"""The samples `vtalign extract` reads: ids, video files and captions, in one fixed order.

Two inputs give the same list of `Sample`s:

- a manifest, CSV or JSONL. JSONL: one object per line with `id`, `video` and
  `captions` (a list of strings). CSV: a header row with `id`, `video` and either
  one `captions` column (a JSON list, or captions separated by `|`) or several
  `caption*` columns (`caption_1`, `caption_2`, ...; empty cells dropped).
  Relative video paths are relative to the manifest's folder.
- a folder of videos plus a caption file (JSON `{video file stem: [captions]}`
  or JSONL as above without `video`): the videos sorted by file name, the id
  being the file's stem.

Both sides of a sweep are extracted from the same list, and every output file
records the ids, so `vtalign sweep` can check the two sides are in the same order.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Sample:
    """One video with its captions. `video` is an absolute path (None for text-only manifests)."""
    id: str
    video: str | None
    captions: tuple[str, ...]


def _captions(where: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: captions look like a JSON list but do not parse: {exc}") from None
        else:
            value = [c for c in (p.strip() for p in text.split("|")) if c]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{where}: captions must be a list of strings, got {type(value).__name__}")
    caps = tuple(c.strip() for c in value if c.strip())
    if not caps:
        raise ValueError(f"{where}: no captions")
    return caps


def _resolve(base: str, where: str, video, need_video: bool) -> str | None:
    if video is None or video == "":
        if need_video:
            raise ValueError(f"{where}: no video path")
        return None
    if not isinstance(video, str):
        raise ValueError(f"{where}: the video path must be a string, got {type(video).__name__}")
    return os.path.normpath(os.path.join(base, video))


def _check(samples: list[Sample], name: str, need_video: bool) -> list[Sample]:
    if not samples:
        raise ValueError(f"{name}: no samples")
    seen: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.id in seen:
            raise ValueError(f"{name}: sample id {s.id!r} appears twice (rows {seen[s.id] + 1} and {i + 1})")
        seen[s.id] = i
        if need_video and not os.path.isfile(s.video):
            raise ValueError(f"{name}: sample {s.id!r}: no such video file: {s.video}")
    return samples


def _read_jsonl(path: str, name: str, need_video: bool) -> list[Sample]:
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{name}: {path}, line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON: {exc}") from None
            if not isinstance(obj, dict) or "id" not in obj or "captions" not in obj:
                raise ValueError(f"{where}: needs an object with 'id', 'video' and 'captions'")
            out.append(Sample(str(obj["id"]), _resolve(base, where, obj.get("video"), need_video),
                              _captions(where, obj["captions"])))
    return out


def _read_csv(path: str, name: str, need_video: bool) -> list[Sample]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
        header = rows[0].keys() if rows else []
    if not rows:
        raise ValueError(f"{name}: {path} has no data rows")
    cap_cols = ["captions"] if "captions" in header else sorted((c for c in header if c.startswith("caption")),
                                                                key=lambda c: (len(c), c))
    missing = [c for c in ("id", "video") if c not in header] + ([] if cap_cols else ["captions"])
    if missing:
        raise ValueError(f"{name}: {path}: the header row needs id, video and captions (or caption_1, "
                         f"caption_2, ...); missing {', '.join(missing)}")
    out = []
    for r, row in enumerate(rows, 1):
        where = f"{name}: {path}, row {r}"
        caps = row["captions"] if cap_cols == ["captions"] else [row[c] or "" for c in cap_cols]
        out.append(Sample(str(row["id"]).strip(), _resolve(base, where, (row["video"] or "").strip(), need_video),
                          _captions(where, caps)))
    return out


def read_manifest(path: str, *, name: str = "manifest", need_video: bool = True) -> list[Sample]:
    """Samples of a `.csv` or `.jsonl` manifest (see the module docstring), in file order.

    Raises ValueError naming `name` and the line or row for a malformed entry, a
    duplicate id, a sample without captions, or (with `need_video`) a missing video."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such manifest file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".jsonl", ".csv"):
        raise ValueError(f"{name}: {path}: a manifest is a .csv or .jsonl file")
    try:
        samples = (_read_jsonl if ext == ".jsonl" else _read_csv)(path, name, need_video)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: {path} is not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{name}: {path} is not a CSV table: {exc}") from None
    return _check(samples, name, need_video)


def folder_samples(folder: str, captions_file: str, *, name: str = "videos") -> list[Sample]:
    """Samples of a folder of videos (sorted by file name, id = stem) and a caption
    file mapping each stem to its captions (JSON object or JSONL with id/captions)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{name}: {folder!r} is not a folder of videos")
    videos = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"{name}: {folder!r} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
    if not os.path.isfile(captions_file):
        raise ValueError(f"--captions-file: no such file: {captions_file}")
    if captions_file.lower().endswith(".jsonl"):
        table = {s.id: s.captions for s in _read_jsonl(captions_file, "--captions-file", False)}
    else:
        try:
            with open(captions_file, encoding="utf-8") as f:
                obj = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--captions-file: {captions_file} is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("--captions-file: expected a JSON object {video stem: [captions]} or a .jsonl file")
        table = {str(k): _captions(f"--captions-file: {k!r}", v) for k, v in obj.items()}
    out = []
    for v in videos:
        stem = os.path.splitext(v)[0]
        if stem not in table:
            raise ValueError(f"--captions-file: no captions for video {v!r} (key {stem!r})")
        out.append(Sample(stem, os.path.abspath(os.path.join(folder, v)), table[stem]))
    return _check(out, name, True)


def check_caption_counts(samples: list[Sample], counts: list[int], option: str = "--captions") -> None:
    """Every sample has at least max(counts) captions (else: the first short sample, by id)."""
    most = max(counts)
    for s in samples:
        if len(s.captions) < most:
            raise ValueError(f"{option}: sample {s.id!r} has {len(s.captions)} captions, fewer than {most}")
