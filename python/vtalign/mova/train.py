"""Train MoVA and its CLIP-style baseline on synthetic long video–text data.

    python -m vtalign.mova.train --synthetic [--json PATH] [--seed S]

Both models get the same data, projections, optimiser, batch size and number of steps;
they are scored on a held-out set drawn from the same world. Prints a progress line on
stderr, both retrieval tables and the mask–window agreement AUC on stdout.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vtalign._atomic import write_json
from vtalign._train_cli import check_training_args, training_parser
from vtalign.data.long_video import LongVideoConfig, LongVideoText, long_video_splits
from vtalign.mova.agreement import mask_window_auc
from vtalign.mova.loss import MoVALoss
from vtalign.mova.model import ClipBaseline, MoVA
from vtalign.mova.retrieval import format_table, retrieval_metrics
from vtalign.nn.contrastive import ContrastiveLoss


@dataclass(frozen=True)
class TrainConfig:
    """The training budget both models share."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    embed_dim: int = 64
    hidden: int = 128
    lambda_global: float = 1.0
    lambda_temporal: float = 1.0
    lambda_sparsity: float = 0.1
    pool: str = "mean"


def _progress(name: str, step: int, total: int, loss: float, t0: float, stream) -> None:
    if stream is None:
        return
    width = 24
    done = int(width * step / total)
    stream.write(f"\r[{name:8s}] [{'#' * done}{'.' * (width - done)}] {step}/{total} "
                 f"loss {loss:.4f} {time.perf_counter() - t0:5.1f}s")
    if step == total:
        stream.write("\n")
    stream.flush()


def fit(name: str, params: list[torch.nn.Parameter], step_loss: Callable[[Any], torch.Tensor],
        data: Any, cfg: Any, seed: int, stream=sys.stderr) -> list[float]:
    """AdamW with cosine decay over `cfg.steps` minibatches drawn with `seed`; returns the losses.

    `data` is any set with `len()` and `subset(idx)` (the synthetic sets of `vtalign.data`);
    `cfg` needs steps, batch_size, lr and weight_decay. Batches are drawn without
    replacement, epoch by epoch, from a generator seeded with `seed`.
    """
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    perm, pos, losses, t0 = torch.randperm(n, generator=g), 0, [], time.perf_counter()
    for step in range(1, cfg.steps + 1):
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        batch = data.subset(perm[pos:pos + cfg.batch_size])
        pos += cfg.batch_size
        loss = step_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == cfg.steps:
            _progress(name, step, cfg.steps, losses[-1], t0, stream)
    return losses


def train_mova(train: LongVideoText, cfg: TrainConfig, seed: int, stream=sys.stderr
               ) -> tuple[MoVA, MoVALoss, list[float]]:
    torch.manual_seed(seed)
    model = MoVA(train.frames.shape[2], train.captions.shape[1], embed_dim=cfg.embed_dim, hidden=cfg.hidden,
                 mask_hidden=cfg.hidden)
    loss_fn = MoVALoss(lambda_global=cfg.lambda_global, lambda_temporal=cfg.lambda_temporal,
                       lambda_sparsity=cfg.lambda_sparsity, pool=cfg.pool)

    def step_loss(b: LongVideoText) -> torch.Tensor:
        return loss_fn(model(b.frames, b.valid, b.captions))[0]

    losses = fit("mova", list(model.parameters()) + list(loss_fn.parameters()), step_loss, train, cfg,
                 seed + 1, stream)
    return model.eval(), loss_fn, losses


def train_baseline(train: LongVideoText, cfg: TrainConfig, seed: int, stream=sys.stderr
                   ) -> tuple[ClipBaseline, list[float]]:
    torch.manual_seed(seed)
    model = ClipBaseline(train.frames.shape[2], train.captions.shape[1], embed_dim=cfg.embed_dim,
                         hidden=cfg.hidden)
    loss_fn = ContrastiveLoss()

    def step_loss(b: LongVideoText) -> torch.Tensor:
        return loss_fn(*model(b.frames, b.valid, b.captions))

    losses = fit("baseline", list(model.parameters()) + list(loss_fn.parameters()), step_loss, train, cfg,
                 seed + 1, stream)
    return model.eval(), losses


def evaluate(mova: MoVA, loss_fn: MoVALoss, baseline: ClipBaseline, test: LongVideoText) -> dict:
    """Retrieval of both models and MoVA's mask–window AUC on `test`."""
    wg, wt = loss_fn.score_weights()
    with torch.no_grad():
        s_mova = mova.scores(test.captions, test.frames, test.valid, global_weight=wg, slot_weight=wt,
                             pool=loss_fn.pool, pool_temperature=loss_fn.pool_temperature)
        s_base = baseline.scores(test.captions, test.frames, test.valid)
        _, _, _, text_prob = mova.text_slots(test.captions, test.frames.shape[1])
    agree = mask_window_auc(text_prob, test.valid, test.visible, test.in_caption())
    return {"mova": retrieval_metrics(s_mova), "baseline": retrieval_metrics(s_base),
            "mask_window_auc": agree["auc"], "mask_window_auc_per_concept": agree["per_concept"]}


def write_json_atomic(path: str, obj: dict) -> None:
    """Write `obj` as JSON atomically (a reader never sees half a file)."""
    write_json(path, obj)


def run(seed: int = 0, n_train: int = 4096, n_test: int = 512, cfg: TrainConfig = TrainConfig(),
        data_config: LongVideoConfig = LongVideoConfig(), stream=sys.stderr) -> dict:
    """Train both models with the same budget and evaluate them; returns the result dict."""
    train, test = long_video_splits(n_train, n_test, config=data_config, seed=seed)
    t0 = time.perf_counter()
    mova, loss_fn, _ = train_mova(train, cfg, seed, stream)
    baseline, _ = train_baseline(train, cfg, seed, stream)
    out = evaluate(mova, loss_fn, baseline, test)
    out["seconds"] = time.perf_counter() - t0
    out["setup"] = {"seed": seed, "n_train": n_train, "n_test": n_test, "train": cfg.__dict__,
                    "data": data_config.__dict__}
    return out


def main(argv: list[str] | None = None) -> int:
    p = training_parser("python -m vtalign.mova.train", __doc__.split("\n")[0],
                        data="synthetic long video-text data", steps=TrainConfig.steps,
                        batch_size=TrainConfig.batch_size, n_train=4096, n_test=512)
    p.add_argument("--n-concepts", type=int, default=LongVideoConfig.n_concepts,
                   help="concept vocabulary K (more concepts: fewer captions share their bag of concepts)")
    p.add_argument("--pool", choices=("mean", "max", "lse"), default=TrainConfig.pool)
    args = p.parse_args(argv)
    check_training_args(p, args)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, pool=args.pool)
    try:
        data_config = LongVideoConfig(n_concepts=args.n_concepts)
        data_config.validate()
    except ValueError as e:
        p.error(str(e))
    res = run(args.seed, args.n_train, args.n_test, cfg, data_config, stream=None if args.quiet else sys.stderr)
    print(f"held-out synthetic set: {args.n_test} pairs, seed {args.seed}, {cfg.steps} steps × "
          f"batch {cfg.batch_size} for each model ({res['seconds']:.0f} s)")
    print(format_table({"MoVA": res["mova"], "CLIP baseline": res["baseline"]}))
    print(f"mask-window AUC: {res['mask_window_auc']:.3f}")
    if args.json:
        write_json_atomic(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
