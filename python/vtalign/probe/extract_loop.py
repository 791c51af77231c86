"""The batch loop both `vtalign extract` commands share: resume, compute, persist, assemble."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from vtalign._progress import progress_bar
from vtalign.probe.extract_store import PartStore, feature_record, write_feature_file
from vtalign.probe.manifest import Sample

BatchFn = Callable[[Sequence[Sample]], dict[int, torch.Tensor]]  # batch -> {count: [b, L, D]}


def run_extraction(samples: Sequence[Sample], counts: Sequence[int], paths: dict[int, str], compute: BatchFn, *,
                   out_dir: str, key: str, batch_size: int, meta: dict[str, str], label: str,
                   progress: bool = True) -> list[str]:
    """Features of every sample at every count, one `[N, L, D]` file per count.

    `compute` maps a batch of samples to `{count: [b, L, D]}`; its results are
    saved per batch (`PartStore`), so an interrupted run resumes at the first
    missing batch. A count whose file already exists from a run with the same
    `key` is skipped. Returns the paths of the files, in `counts` order.
    """
    n = len(samples)
    ids = [s.id for s in samples]
    meta = dict(meta, run_key=key)
    todo = [c for c in counts if (feature_record(paths[c])[1] or {}).get("run_key") != key]
    if not todo:
        return [paths[c] for c in counts]
    store = PartStore(out_dir, key)
    starts = list(range(0, n, batch_size))
    sizes = [min(batch_size, n - s) for s in starts]
    missing = [(s, r) for s, r in zip(starts, sizes) if not all(store.has(c, s, r) for c in todo)]
    with progress_bar(f"extract {label}", n, enabled=progress, unit="sample") as bar:
        bar.update(n - sum(r for _, r in missing))
        for s, r in missing:
            feats = compute(samples[s:s + r])
            for c in todo:
                store.save(c, s, feats[c])
            bar.update(r)
    for c in todo:  # stream each count's parts into its file, one part in memory at a time
        shape = tuple(store.load(c, 0, sizes[0]).shape[1:])
        write_feature_file(paths[c], store.parts(c, starts, sizes), (n, *shape), ids,
                           dict(meta, count=str(c)))
    store.remove()
    return [paths[c] for c in counts]


def check_batch_args(samples: Sequence[Sample], out_dir: str, counts: Sequence[int], batch_size: int,
                     option: str) -> list[int]:
    """Samples present, the counts as sorted distinct ints >= 1, and a usable output folder (nothing created)."""
    from vtalign._atomic import check_out_dir
    from vtalign.probe._checks import check_int

    if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence) or not samples:
        raise ValueError("samples must be a non-empty list of Sample (read_manifest / folder_samples)")
    if not all(isinstance(s, Sample) for s in samples):
        raise TypeError("samples must hold vtalign.probe.manifest.Sample entries")
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or not counts:
        raise ValueError(f"{option} must be a non-empty list of counts, got {counts!r}")
    out = sorted({check_int(f"{option}[{i}]", c, lo=1) for i, c in enumerate(counts)})
    check_int("batch_size", batch_size, lo=1)
    check_out_dir(out_dir, "out_dir")
    return out


def output_paths(out_dir: str, names: dict[int, str]) -> dict[int, str]:
    return {c: os.path.join(out_dir, name) for c, name in names.items()}
