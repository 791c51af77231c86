"""`vtalign extract video|text`: one `[N, L, D]` feature file per frame or caption count."""
from __future__ import annotations

import argparse
import time

from vtalign.cli._args import _probe_device, int_in, positive_int


def _samples(args: argparse.Namespace, need_video: bool):
    from vtalign.probe.manifest import folder_samples, read_manifest

    if (args.manifest is None) == (args.videos is None):
        raise ValueError("give either --manifest FILE or --videos FOLDER with --captions-file FILE")
    if args.manifest is not None:
        if args.captions_file is not None:
            raise ValueError("--captions-file goes with --videos, not with --manifest (the manifest holds them)")
        return read_manifest(args.manifest, name="--manifest", need_video=need_video)
    if args.captions_file is None:
        raise ValueError("--videos needs --captions-file (JSON {video stem: [captions]} or JSONL)")
    return folder_samples(args.videos, args.captions_file, name="--videos")


def _common_checks(args: argparse.Namespace, counts_option: str, counts: list[int]) -> str:
    from vtalign._atomic import check_out_dir

    check_out_dir(args.out, "--out")
    if len(set(counts)) != len(counts):
        raise ValueError(f"{counts_option}: each count once, got {counts}")
    dev = _probe_device(args.device, "auto")
    return "cpu" if dev is None else str(dev)


def _cmd_video(args: argparse.Namespace) -> int:
    from vtalign.probe.extract_video import extract_video

    device = _common_checks(args, "--frames", args.frames)
    if args.image_frames == "first" and args.frames != [1]:
        raise ValueError("--frames: --image-frames first encodes the first frame only; give --frames 1")
    samples = _samples(args, need_video=True)
    t0 = time.perf_counter()
    files = extract_video(samples, args.model, args.frames, args.out, name=args.name, pool=args.pool,
                          image_frames=args.image_frames, fmt="." + args.format, batch_size=args.batch_size,
                          device=device, progress=not args.quiet)
    print(f"{len(samples)} videos x {len(files)} frame counts in {time.perf_counter() - t0:.1f} s; wrote "
          + ", ".join(files))
    return 0


def _cmd_text(args: argparse.Namespace) -> int:
    from vtalign.probe.extract_text import extract_text
    from vtalign.probe.manifest import check_caption_counts

    device = _common_checks(args, "--captions", args.captions)
    samples = _samples(args, need_video=False)
    check_caption_counts(samples, args.captions, "--captions")
    t0 = time.perf_counter()
    files = extract_text(samples, args.model, args.captions, args.out, name=args.name, pool=args.pool,
                         fmt="." + args.format, batch_size=args.batch_size, max_length=args.max_length,
                         device=device, progress=not args.quiet)
    print(f"{len(samples)} samples x {len(files)} caption counts in {time.perf_counter() - t0:.1f} s; wrote "
          + ", ".join(files))
    return 0


def _inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="CSV or JSONL: id, video, captions (one row per sample, in output order)")
    p.add_argument("--videos", help="a folder of videos (sorted by name; id = file stem), with --captions-file")
    p.add_argument("--captions-file", help="JSON {video stem: [captions]} or JSONL (id, captions) for --videos")
    p.add_argument("--model", required=True,
                   help="a local model folder, or a Hugging Face id already in the local cache (never downloaded)")
    p.add_argument("--name", default=None, help="the <model> part of the file names (default: from --model)")
    p.add_argument("--pool", choices=["avg", "cls"], default="avg", help="per hidden state: token mean or first token")
    p.add_argument("--format", choices=["pt", "safetensors"], default="pt")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--out", required=True, help="folder for the feature files (and .partial/ while running)")
    p.add_argument("--quiet", action="store_true")


def add_parser(sub) -> None:
    ex = sub.add_parser("extract", help="features of videos / captions, one [N, L, D] file per frame / caption count")
    kinds = ex.add_subparsers(dest="kind", required=True)
    vid = kinds.add_parser("video", help="video or image model, every hidden state, at each --frames count")
    _inputs(vid)
    vid.add_argument("--frames", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    vid.add_argument("--image-frames", choices=["mean", "first"], default="mean",
                     help="image models: mean over the n_f frames, or the first frame only")
    vid.add_argument("--batch-size", type=positive_int, default=8, help="videos per batch (memory: one batch)")
    vid.set_defaults(func=_cmd_video)
    txt = kinds.add_parser("text", help="text model, every hidden state, at each --captions count (joined)")
    _inputs(txt)
    txt.add_argument("--captions", type=positive_int, nargs="+", default=[1, 2, 3, 5, 10])
    txt.add_argument("--batch-size", type=positive_int, default=32, help="samples per batch")
    txt.add_argument("--max-length", type=int_in(1), default=512, help="tokens per joined caption string at most")
    txt.set_defaults(func=_cmd_text)
