"""A few minutes of GPU timings for `tools/gpu_check.sh`: each Triton op against the
plain torch way of computing the same thing on the same device.

    python -m vtalign.benchmarks.gpu_quick --out DIR [--device cuda] [--size small|tiny]

- kNN: `cosine_knn` (Triton) against chunked `mm` + `topk` (vtalign's torch backend),
  and the bare N x N x D GEMM in chunks (the physical limit of any exact search);
- contrastive: `contrastive_loss` forward+backward (Triton) against the dense-logits loss;
- soft-DTW: `soft_dtw` forward+backward (Triton) against vtalign's torch backend.

Times are medians of CUDA-event-timed calls after a warm-up (Triton compiles there);
`--size tiny` runs on the CPU (torch backends only) to rehearse the script without a GPU.
Writes DIR/gpu_bench.md and DIR/gpu_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SIZES = {
    "small": dict(knn=(1, 65536, 768, 10), clip=(8192, 512), sdtw=(32, 512, 512, 64)),
    "tiny": dict(knn=(1, 512, 32, 5), clip=(64, 32), sdtw=(4, 16, 16, 8)),
}


def _timed(fn, device: torch.device, reps: int = 5) -> float:
    """Median seconds of `reps` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize(device)
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(device: torch.device, size: str) -> list[dict]:
    import vtalign

    fast = "triton" if device.type == "cuda" else "torch"
    g = torch.Generator(device=device).manual_seed(0)
    rows = []

    L, N, D, k = SIZES[size]["knn"]
    x = torch.randn(L, N, D, device=device, generator=g)
    side = 8192

    def gemm():
        xn = F.normalize(x[0], dim=-1)
        for i in range(0, N, side):
            xn[i:i + side] @ xn.T

    rows += [dict(case=f"cosine kNN N={N}, D={D}, k={k}", impl=f"vtalign ({fast})",
                  seconds=_timed(lambda: vtalign.cosine_knn(x, k, backend=fast), device)),
             dict(case=f"cosine kNN N={N}, D={D}, k={k}", impl="mm + topk in chunks (torch backend)",
                  seconds=_timed(lambda: vtalign.cosine_knn(x, k, backend="torch"), device)),
             dict(case=f"cosine kNN N={N}, D={D}, k={k}", impl="bare GEMM (the limit)", seconds=_timed(gemm, device))]

    B, D = SIZES[size]["clip"]
    a = torch.randn(B, D, device=device, generator=g, requires_grad=True)
    b = torch.randn(B, D, device=device, generator=g, requires_grad=True)
    labels = torch.arange(B, device=device)

    def plain():
        s = 10.0 * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
        (0.5 * (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels))).backward()

    rows += [dict(case=f"contrastive fwd+bwd B={B}, D={D}", impl=f"vtalign ({fast})",
                  seconds=_timed(lambda: vtalign.contrastive_loss(a, b, 10.0, backend=fast).backward(), device)),
             dict(case=f"contrastive fwd+bwd B={B}, D={D}", impl="plain torch (dense logits)",
                  seconds=_timed(plain, device))]

    B, N, M, D = SIZES[size]["sdtw"]
    xs = (torch.randn(B, N, D, device=device, generator=g) / D ** 0.5).requires_grad_()
    ys = torch.randn(B, M, D, device=device, generator=g) / D ** 0.5
    rows += [dict(case=f"soft-DTW fwd+bwd B={B}, N=M={N}, D={D}", impl=f"vtalign ({fast})",
                  seconds=_timed(lambda: vtalign.soft_dtw(xs, ys, 1.0, backend=fast).sum().backward(), device)),
             dict(case=f"soft-DTW fwd+bwd B={B}, N=M={N}, D={D}", impl="vtalign torch backend",
                  seconds=_timed(lambda: vtalign.soft_dtw(xs, ys, 1.0, backend="torch").sum().backward(), device,
                                 reps=2))]
    return rows


def markdown(rows: list[dict], device: torch.device) -> str:
    base = {r["case"]: r["seconds"] for r in rows if r["impl"].startswith("vtalign (")}
    out = [f"Device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch "
           f"{torch.__version__}. Median of 5 timed calls after a warm-up.", "",
           "| case | implementation | ms | time / vtalign's |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['impl']} | {r['seconds'] * 1e3:.3g} | {r['seconds'] / base[r['case']]:.2f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vtalign.benchmarks.gpu_quick")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=list(SIZES), default="small")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_quick: no CUDA device (use --device cpu --size tiny to rehearse)", file=sys.stderr)
        return 2
    os.environ.pop("TRITON_INTERPRET", None)
    rows = run(device, args.size)
    os.makedirs(args.out, exist_ok=True)
    from vtalign._atomic import write_text

    write_text(os.path.join(args.out, "gpu_bench.json"), json.dumps(rows, indent=1) + "\n")
    md = markdown(rows, device)
    write_text(os.path.join(args.out, "gpu_bench.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
