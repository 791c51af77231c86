"""`vtalign extract text`: per-layer features of every sample's captions at every caption count.

For a count n_c the sample's first n_c captions are joined with spaces into one
string (the multi-caption protocol of `multi_caption_features`), tokenised
(truncated to the model's limit) and encoded; every hidden state is pooled
(`avg`: mean over the non-padding tokens, `cls`: the first token), giving one
`[N, L, D]` file per count, `<model>_pool-<pool>_numcaptions-<n_c><fmt>`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vtalign.probe._checks import check_choice
from vtalign.probe.extract_loop import check_batch_args, output_paths, run_extraction
from vtalign.probe.extract_store import FORMATS, feature_file_name, run_key
from vtalign.probe.extract_video import check_device, model_fingerprint
from vtalign.probe.hf_models import POOLS, TextEncoder, load_text_encoder
from vtalign.probe.manifest import Sample, check_caption_counts


def joined_captions(sample: Sample, n_captions: int) -> str:
    """The first `n_captions` captions of a sample as one string."""
    return " ".join(sample.captions[:n_captions])


def text_batch_features(enc: TextEncoder, batch: Sequence[Sample], counts: Sequence[int]) -> dict[int, torch.Tensor]:
    """{n_c: `[b, L, D]`} for one batch of samples."""
    return {c: enc.encode([joined_captions(s, c) for s in batch]) for c in counts}


def extract_text(samples: Sequence[Sample], model: str, captions: Sequence[int], out_dir: str, *,
                 name: str | None = None, pool: str = "avg", fmt: str = ".pt", batch_size: int = 32,
                 max_length: int = 512,
                 device: str | torch.device = "cpu", progress: bool = True) -> list[str]:
    """Write `<model>_pool-<pool>_numcaptions-<n_c><fmt>` (`feats` `[N, L, D]`, `ids`) for every n_c.

    Args:
        samples: the captions, in the order of the output rows (`read_manifest`);
            every sample needs at least max(captions) captions.
        name: the `<model>` part of the file names (default: the folder's name or the hub id).
        model: a local model folder (a sentence-transformers folder too) or a hub id in
            the local cache (never downloaded).
        captions: the caption counts n_c.
        max_length: tokens per joined string at most (also capped by the model's limit).

    Returns:
        The files written, in ascending n_c.
    """
    counts = check_batch_args(samples, out_dir, captions, batch_size, "captions")
    check_choice("pool", pool, POOLS)
    check_choice("fmt", fmt, FORMATS)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an int >= 1, got {max_length!r}")
    check_caption_counts(list(samples), counts, "captions")
    dev = check_device(device)
    enc = load_text_encoder(model, pool=pool, device=dev, max_length=max_length)
    key = run_key(model=model_fingerprint(model), pool=pool, ids=[s.id for s in samples],
                  captions=[list(s.captions[:max(counts)]) for s in samples], max_length=enc.max_length,
                  batch_size=batch_size, axis="captions")
    paths = output_paths(out_dir, {c: feature_file_name(name or model, pool, "captions", c, fmt) for c in counts})
    meta = dict(model=str(model), pool=pool, axis="captions", max_length=str(enc.max_length))
    return run_extraction(samples, counts, paths, lambda b: text_batch_features(enc, b, counts), out_dir=out_dir,
                          key=key, batch_size=batch_size, meta=meta, label="text", progress=progress)
