"""The `vtalign` command."""
from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import torch

    from vtalign.data.synthetic import layer_stacks
    from vtalign.ops._common import resolve_backend
    from vtalign.probe import layerwise_alignment

    data = layer_stacks(n=args.n, seed=args.seed)
    backend = resolve_backend("auto", [data.feats_a])
    t0 = time.perf_counter()
    res = layerwise_alignment(data.feats_a, data.feats_b, metric="mutual_knn", k=args.k)
    dt = time.perf_counter() - t0
    print(f"vtalign demo: layer-pair mutual-kNN alignment (N={data.feats_a.shape[0]}, k={args.k}, "
          f"{data.feats_a.shape[1]} x {data.feats_b.shape[1]} layers, backend={backend}, "
          f"torch {torch.__version__})\n")
    print(res.table())
    print(f"\nbest pair: A layer {res.best[0]} <-> B layer {res.best[1]}  score {res.best_score:.3f}  "
          f"(chance {res.chance:.4f}; planted pair {data.best})")
    print(f"computed in {dt * 1e3:.1f} ms: {len(res.names_a) + len(res.names_b)} kNN searches "
          f"and one overlap launch for {res.scores.numel()} pairs")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vtalign", description="video-text alignment kernels")
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="layer-pair alignment on the built-in synthetic stacks")
    demo.add_argument("--n", type=int, default=2048, help="samples")
    demo.add_argument("--k", type=int, default=10, help="neighbours")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"vtalign: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
