"""Contrastive losses on the CPU against the plain torch losses that build the logits.

`python -m benchmarks.run contrastive [--size small|full]`. Every point runs in a
fresh process (one per implementation and size), so its peak memory is that loss's
alone: after the inputs exist and a tiny warm-up call has paid the import costs,
the peak-RSS counter is reset; "extra" is the peak above that baseline (the loss's
own memory: logits or tiles, gradients, saved tensors), "peak" is the process's
whole resident peak. The implementations of a point run one after the other in
the same run, so a busy machine hits both alike.
"""
from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks._measure import in_subprocess, record, reset_peak, rss_mib

SCALE = 1 / 0.07  # CLIP's initial multiplier
SIZES = {
    "small": dict(clip=dict(B=2048, D=256), slot=dict(B=512, T=8, D=64), memory=[512, 1024, 2048, 4096],
                  plain_max=4096, repeat=2),
    "full": dict(clip=dict(B=8192, D=512), slot=dict(B=2048, T=16, D=256),
                 memory=[1024, 4096, 8192, 16384, 32768, 65536], plain_max=16384, repeat=2),
}


# ---------------------------------------------------------------- baselines
def plain_clip(a, b, scale):
    """The usual CLIP loss: dense logits, cross-entropy both ways."""
    logits = scale * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    labels = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def plain_slot(ta, vb, valid, scale, pool, tau=0.1):
    """The frame-slot loss written directly: a dense [B, B, T] cosine tensor, pooled."""
    cos = torch.einsum("itd,jtd->ijt", F.normalize(ta, dim=-1), F.normalize(vb, dim=-1))
    v = valid[None]
    if pool == "mean":
        pooled = (cos * v).sum(2) / valid.sum(1)[None]
    elif pool == "max":
        pooled = cos.masked_fill(~v, float("-inf")).amax(2)
    else:
        pooled = tau * (torch.logsumexp(cos.masked_fill(~v, float("-inf")) / tau, 2)
                        - torch.log(valid.sum(1).float())[None])
    logits = scale * pooled
    labels = torch.arange(ta.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


# ------------------------------------------------------------ subprocess worker
def _worker(spec: dict) -> dict:
    import vtalign

    gen = torch.Generator().manual_seed(0)
    kind, impl, B = spec["kind"], spec["impl"], spec["B"]
    scale = torch.tensor(SCALE, requires_grad=True)
    if kind == "clip":
        D = spec["D"]
        small = [torch.randn(8, D, requires_grad=True) for _ in range(2)]
        a = torch.randn(B, D, generator=gen, requires_grad=True)
        b = torch.randn(B, D, generator=gen, requires_grad=True)
        if impl == "vtalign":
            fn = lambda x, y: vtalign.contrastive_loss(x, y, scale, backend="torch")  # noqa: E731
        else:
            fn = lambda x, y: plain_clip(x, y, scale)  # noqa: E731
        args, warm = (a, b), small
    else:
        T, D, pool = spec["T"], spec["D"], spec["pool"]
        valid = torch.rand(B, T, generator=gen) < 0.8
        valid[:, 0] = True
        ta = torch.randn(B, T, D, generator=gen, requires_grad=True)
        vb = torch.randn(B, T, D, generator=gen, requires_grad=True)
        if impl == "vtalign":
            fn = lambda x, y, v: vtalign.slot_contrastive_loss(x, y, v, scale, pool=pool, backend="torch")  # noqa
        else:
            fn = lambda x, y, v: plain_slot(x, y, v, scale, pool)  # noqa: E731
        args = (ta, vb, valid)
        warm = (torch.randn(8, T, D, requires_grad=True), torch.randn(8, T, D, requires_grad=True), valid[:8])
    fn(*warm).backward()  # first-call import costs (torch.library, dynamo) are not the loss's
    rss0, _ = rss_mib()
    reset_peak()
    times = []
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        loss = fn(*args)
        loss.backward()
        times.append(time.perf_counter() - t0)
        for t in args:
            if isinstance(t, torch.Tensor) and t.grad is not None:
                t.grad = None
    _, peak = rss_mib()
    return dict(seconds=min(times), peak_mib=peak, extra_mib=peak - rss0, loss=float(loss))


def _point(**spec) -> dict:
    return in_subprocess("benchmarks.bench_contrastive", json.dumps(spec), timeout=3000)


def _fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


# ------------------------------------------------------------------- suite
def run(size: str = "full") -> str:
    cfg = SIZES[size]
    rep = cfg["repeat"]
    out = []

    c = cfg["clip"]
    res = {impl: _point(kind="clip", impl=impl, repeat=rep, **c) for impl in ("plain", "vtalign")}
    case = f"clip B={c['B']} D={c['D']}"
    for impl, r in res.items():
        record("contrastive", case, "vtalign" if impl == "vtalign" else "plain torch (dense logits)",
               r["seconds"], peak_mib=r["peak_mib"], extra_mib=r["extra_mib"])
    p, v = res["plain"], res["vtalign"]
    out += [f"## InfoNCE forward+backward, B={c['B']}, D={c['D']}, scale={SCALE:.2f}, float32, CPU",
            "",
            "| implementation | time (s, best of %d) | extra memory (MiB) | process peak (MiB) | loss |" % rep,
            "|---|---|---|---|---|",
            f"| plain torch (dense logits, cross_entropy) | {_fmt(p['seconds'], 2)} | {_fmt(p['extra_mib'])} | "
            f"{_fmt(p['peak_mib'])} | {p['loss']:.6f} |",
            f"| vtalign.contrastive_loss (chunked, recomputing) | {_fmt(v['seconds'], 2)} | {_fmt(v['extra_mib'])} | "
            f"{_fmt(v['peak_mib'])} | {v['loss']:.6f} |",
            "",
            f"time ratio vtalign/plain = **{v['seconds'] / p['seconds']:.2f}** (target <= 1.4); extra-memory ratio = "
            f"**{v['extra_mib'] / p['extra_mib']:.3f}** (target <= 0.25); whole-process peak ratio = "
            f"{v['peak_mib'] / p['peak_mib']:.3f}.", ""]

    s = cfg["slot"]
    out += [f"## Frame-slot loss forward+backward, B={s['B']}, T={s['T']}, D={s['D']}, 80% valid frames, CPU", "",
            "| pool | plain time (s) | vtalign time (s) | ratio | plain extra (MiB) | vtalign extra (MiB) |",
            "|---|---|---|---|---|---|"]
    for pool in ("mean", "max", "lse"):
        r = {impl: _point(kind="slot", impl=impl, pool=pool, repeat=1, **s) for impl in ("plain", "vtalign")}
        case = f"slot[{pool}] B={s['B']} T={s['T']} D={s['D']}"
        for impl, x in r.items():
            record("contrastive", case, "vtalign" if impl == "vtalign" else "plain torch (dense [B,B,T])",
                   x["seconds"], peak_mib=x["peak_mib"], extra_mib=x["extra_mib"])
        out.append(f"| {pool} | {_fmt(r['plain']['seconds'], 2)} | {_fmt(r['vtalign']['seconds'], 2)} | "
                   f"{r['vtalign']['seconds'] / r['plain']['seconds']:.2f} | {_fmt(r['plain']['extra_mib'])} | "
                   f"{_fmt(r['vtalign']['extra_mib'])} |")
    out.append("")

    D = c["D"]
    out += [f"## Memory against batch size (InfoNCE forward+backward, D={D}, one run per point)", "",
            "| B | vtalign time (s) | vtalign extra (MiB) | vtalign peak (MiB) | plain time (s) | plain extra (MiB) |",
            "|---|---|---|---|---|---|"]
    last_plain = None
    for B in cfg["memory"]:
        v = _point(kind="clip", impl="vtalign", B=B, D=D, repeat=1)
        record("contrastive", f"memory B={B} D={D}", "vtalign", v["seconds"], peak_mib=v["peak_mib"],
               extra_mib=v["extra_mib"])
        if B <= cfg["plain_max"]:
            p = _point(kind="clip", impl="plain", B=B, D=D, repeat=1)
            record("contrastive", f"memory B={B} D={D}", "plain torch (dense logits)", p["seconds"],
                   peak_mib=p["peak_mib"], extra_mib=p["extra_mib"])
            plain = f"{_fmt(p['seconds'], 2)} | {_fmt(p['extra_mib'])}"
            last_plain = (B, p["extra_mib"])
        else:  # the dense loss's memory grows as B²: extrapolate from the largest point run
            b0, m0 = last_plain
            plain = f"not run | ≈ {_fmt(m0 * (B / b0) ** 2, 0)} (extrapolated as B² from B={b0:,})"
        out.append(f"| {B:,} | {_fmt(v['seconds'], 2)} | {_fmt(v['extra_mib'])} | {_fmt(v['peak_mib'])} | {plain} |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--worker":
    print(json.dumps(_worker(json.loads(sys.argv[2]))))
