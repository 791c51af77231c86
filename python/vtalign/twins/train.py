"""VT-TWINS demo: S2DTW contrastive training vs a mean-pooled CLIP baseline.

    python -m vtalign.twins.train --synthetic [--json PATH] [--seed S] [--no-augment]

Both models use the same encoders, data, optimiser, batch size and number of steps, and
are scored on held-out clip/caption sequences (caption sequence -> clip sequence
retrieval and back). Progress on stderr, the retrieval table on stdout.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from vtalign._train_cli import check_training_args, training_parser
from vtalign.data.sequences import ClipCaptionSequences, SequenceConfig, sequence_splits
from vtalign.mova.retrieval import format_table, retrieval_metrics
from vtalign.mova.train import fit, write_json_atomic
from vtalign.nn.contrastive import ContrastiveLoss
from vtalign.twins.augment import TemporalAugmentation
from vtalign.twins.loss import TwinsLoss, s2dtw_logits
from vtalign.twins.model import SequenceEncoders, mean_pooled_scores


@dataclass(frozen=True)
class TwinsTrainConfig:
    """The budget and hyper-parameters both models share (S2DTW ones: VT-TWINS' defaults)."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    embed_dim: int = 32
    hidden: int = 128
    augment: bool = True
    aug_sharpness: float = 50.0
    temperature: float = 1.0
    gamma: float = 0.1
    smoothing_gamma: float = 0.1
    null_cost: float = 0.5


def _encoders(data: ClipCaptionSequences, cfg: TwinsTrainConfig, seed: int) -> SequenceEncoders:
    torch.manual_seed(seed)
    return SequenceEncoders(data.clips.shape[2], data.captions.shape[2], cfg.embed_dim, cfg.hidden)


def train_twins(train: ClipCaptionSequences, cfg: TwinsTrainConfig, seed: int, stream=sys.stderr
                ) -> tuple[SequenceEncoders, float]:
    """The S2DTW model and the fraction of sequences the augmentation actually permuted."""
    model = _encoders(train, cfg, seed)
    loss_fn = TwinsLoss(temperature=cfg.temperature, gamma=cfg.gamma, smoothing_gamma=cfg.smoothing_gamma,
                        null_cost=cfg.null_cost)
    aug = TemporalAugmentation(sharpness=cfg.aug_sharpness) if cfg.augment else None
    g = torch.Generator().manual_seed(seed + 2)
    counts = [0, 0]  # sequences permuted, sequences seen

    def step_loss(b: ClipCaptionSequences) -> torch.Tensor:
        clips, caps = model(b.clips, b.captions)
        if aug is not None:
            (clips, pc), (caps, pt) = aug(clips, g), aug(caps, g)
            for p in (pc, pt):
                counts[0] += int((p != torch.arange(p.shape[1])).any(1).sum())
                counts[1] += p.shape[0]
        return loss_fn(clips, caps)

    fit("s2dtw", list(model.parameters()), step_loss, train, cfg, seed + 1, stream)
    return model.eval(), counts[0] / max(1, counts[1])


def train_baseline(train: ClipCaptionSequences, cfg: TwinsTrainConfig, seed: int, stream=sys.stderr
                   ) -> SequenceEncoders:
    model = _encoders(train, cfg, seed)
    loss_fn = ContrastiveLoss()

    def step_loss(b: ClipCaptionSequences) -> torch.Tensor:
        clips, caps = model(b.clips, b.captions)
        return loss_fn(caps.mean(1), clips.mean(1))

    fit("baseline", list(model.parameters()) + list(loss_fn.parameters()), step_loss, train, cfg, seed + 1,
        stream)
    return model.eval()


def evaluate(twins: SequenceEncoders, baseline: SequenceEncoders, test: ClipCaptionSequences,
             cfg: TwinsTrainConfig) -> dict:
    with torch.no_grad():
        clips, caps = twins(test.clips, test.captions)
        s_twins = s2dtw_logits(clips, caps, temperature=cfg.temperature, gamma=cfg.gamma,
                               smoothing_gamma=cfg.smoothing_gamma, null_cost=cfg.null_cost)
        s_base = mean_pooled_scores(*baseline(test.clips, test.captions))
    return {"s2dtw": retrieval_metrics(s_twins), "baseline": retrieval_metrics(s_base)}


def run(seed: int = 0, n_train: int = 2048, n_test: int = 256, cfg: TwinsTrainConfig = TwinsTrainConfig(),
        data_config: SequenceConfig = SequenceConfig(), stream=sys.stderr) -> dict:
    """Train both models with the same budget and evaluate them; returns the result dict."""
    train, test = sequence_splits(n_train, n_test, config=data_config, seed=seed)
    t0 = time.perf_counter()
    twins, shuffled = train_twins(train, cfg, seed, stream)
    baseline = train_baseline(train, cfg, seed, stream)
    out = evaluate(twins, baseline, test, cfg)
    out["augmentation_permuted_fraction"] = shuffled
    out["seconds"] = time.perf_counter() - t0
    out["setup"] = {"seed": seed, "n_train": n_train, "n_test": n_test, "train": cfg.__dict__,
                    "data": data_config.__dict__}
    return out


def main(argv: list[str] | None = None) -> int:
    p = training_parser("python -m vtalign.twins.train", __doc__.split("\n")[0],
                        data="synthetic clip/caption sequences", steps=TwinsTrainConfig.steps,
                        batch_size=TwinsTrainConfig.batch_size, n_train=2048, n_test=256)
    p.add_argument("--n-events", type=int, default=SequenceConfig.n_events,
                   help="event vocabulary V (more events: fewer scripts share their bag of events)")
    p.add_argument("--no-augment", action="store_true", help="train without the temporal augmentation")
    p.add_argument("--aug-sharpness", type=float, default=TwinsTrainConfig.aug_sharpness,
                   help="softmin sharpness of the augmentation's permutation weights (VT-TWINS: 50)")
    args = p.parse_args(argv)
    check_training_args(p, args)
    if not args.aug_sharpness >= 0 or args.aug_sharpness == float("inf"):
        p.error("--aug-sharpness must be finite and >= 0")
    cfg = TwinsTrainConfig(steps=args.steps, batch_size=args.batch_size, augment=not args.no_augment,
                           aug_sharpness=args.aug_sharpness)
    try:
        data_config = SequenceConfig(n_events=args.n_events)
        data_config.validate()
    except ValueError as e:
        p.error(str(e))
    res = run(args.seed, args.n_train, args.n_test, cfg, data_config, stream=None if args.quiet else sys.stderr)
    print(f"held-out synthetic sequences: {args.n_test} pairs, seed {args.seed}, {cfg.steps} steps × "
          f"batch {cfg.batch_size} for each model ({res['seconds']:.0f} s)")
    print(format_table({"S2DTW (VT-TWINS)": res["s2dtw"], "mean-pool baseline": res["baseline"]}))
    if cfg.augment:
        print(f"temporal augmentation permuted {100 * res['augmentation_permuted_fraction']:.1f}% of the sequences")
    if args.json:
        write_json_atomic(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
