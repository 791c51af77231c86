"""Contrastive losses on the CPU against the plain torch losses that build the logits.

`vtalign bench --suites contrastive`. Every point runs in fresh processes, one per
implementation, alternated over rounds (benchmarks/README.md), so its peak memory is
that loss's alone: after the inputs exist and a tiny warm-up call has paid the import
costs, the peak-RSS counter is reset; "extra" is the peak above that baseline (the
loss's own memory: logits or tiles, gradients, saved tensors). Embeddings are raw
`randn` rows (norm ≈ √D); both losses normalise them inside the timed call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._measure import compare, ratio_stats, record_compared, time_calls, worker_main

SCALE = 1 / 0.07  # CLIP's initial multiplier
SIZES = {
    "small": dict(clip=dict(B=2048, D=256), slot=dict(B=512, T=8, D=64), memory=[512, 1024, 4096],
                  plain_max=1024),
    # B = 8192 is the clip case; the largest point shows vtalign's memory where the dense
    # loss would need tens of GiB (run once: it is not compared)
    "full": dict(clip=dict(B=8192, D=512), slot=dict(B=2048, T=16, D=256),
                 memory=[1024, 4096, 16384, 32768], plain_max=16384),
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
def worker(spec: dict) -> dict:
    import vtalign

    gen = torch.Generator().manual_seed(0)
    kind, impl, B = spec["kind"], spec["impl"], spec["B"]
    scale = torch.tensor(SCALE, requires_grad=True)
    if kind == "clip":
        D = spec["D"]
        a = torch.randn(B, D, generator=gen, requires_grad=True)
        b = torch.randn(B, D, generator=gen, requires_grad=True)
        if impl == "vtalign":
            fn = lambda x, y: vtalign.contrastive_loss(x, y, scale, backend="torch")  # noqa: E731
        else:
            fn = lambda x, y: plain_clip(x, y, scale)  # noqa: E731
        args = (a, b)
        warm = [torch.randn(8, D, requires_grad=True) for _ in range(2)]
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
    losses = []

    def step():
        loss = fn(*args)
        loss.backward()
        losses.append(float(loss))
        for t in (*args, scale):
            t.grad = None

    out = time_calls(step, warmup=lambda: fn(*warm).backward(), reps=spec.get("reps"))
    return {**out, "loss": losses[-1]}


def _fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def _ratio(st: dict, other: str) -> str:
    r = ratio_stats(st[other]["times"], st["vtalign"]["times"])
    return f"**{r['median']:.2f}x** ({r['min']:.2f}–{r['max']:.2f})"


def _sec(s: dict) -> str:
    return f"{s['seconds']:.3g} ({s['seconds_min']:.3g}–{s['seconds_max']:.3g})"


# ------------------------------------------------------------------- suite
def run(size: str = "full", progress=None) -> str:
    cfg = SIZES[size]
    mod = __name__
    out = []

    c = cfg["clip"]
    plain = "plain torch (dense logits)"
    case = f"clip B={c['B']} D={c['D']}"
    res = compare(mod, {"vtalign": dict(kind="clip", impl="vtalign", **c),
                        plain: dict(kind="clip", impl="plain", **c)}, progress=progress)
    st = record_compared("contrastive", case, res)
    p, v = st[plain], st["vtalign"]
    out += [f"## InfoNCE forward+backward, B={c['B']}, D={c['D']}, scale={SCALE:.2f}, float32, CPU", "",
            "| implementation | seconds, median (min–max) | rounds | extra memory (MiB) | loss |",
            "|---|---|---|---|---|",
            f"| plain torch (dense logits, cross_entropy) | {_sec(p)} | {p['rounds']} | {_fmt(p['peak_mib'])} | "
            f"{res[plain]['runs'][0]['loss']:.6f} |",
            f"| vtalign.contrastive_loss (chunked, recomputing) | {_sec(v)} | {v['rounds']} | {_fmt(v['peak_mib'])} | "
            f"{res['vtalign']['runs'][0]['loss']:.6f} |", "",
            f"Plain time / vtalign time: {_ratio(st, plain)}; extra-memory ratio vtalign/plain = "
            f"**{v['peak_mib'] / p['peak_mib']:.3f}**.", ""]

    s = cfg["slot"]
    plain_slot_label = "plain torch (dense [B,B,T])"
    out += [f"## Frame-slot loss forward+backward, B={s['B']}, T={s['T']}, D={s['D']}, 80% valid frames, CPU", "",
            "| pool | plain s | vtalign s | plain time / vtalign time | plain extra (MiB) | vtalign extra (MiB) |",
            "|---|---|---|---|---|---|"]
    for pool in ("mean", "max", "lse"):
        res = compare(mod, {"vtalign": dict(kind="slot", impl="vtalign", pool=pool, **s),
                            plain_slot_label: dict(kind="slot", impl="plain", pool=pool, **s)}, progress=progress)
        st = record_compared("contrastive", f"slot[{pool}] B={s['B']} T={s['T']} D={s['D']}", res)
        out.append(f"| {pool} | {_sec(st[plain_slot_label])} | {_sec(st['vtalign'])} | {_ratio(st, plain_slot_label)} "
                   f"| {_fmt(st[plain_slot_label]['peak_mib'])} | {_fmt(st['vtalign']['peak_mib'])} |")
    out.append("")

    D = c["D"]
    out += [f"## Memory against batch size (InfoNCE forward+backward, D={D})", "",
            "| B | vtalign s | vtalign extra (MiB) | plain s | plain extra (MiB) | plain time / vtalign time |",
            "|---|---|---|---|---|---|"]
    last_plain = None
    for B in cfg["memory"]:
        methods = {"vtalign": dict(kind="clip", impl="vtalign", B=B, D=D)}
        if B <= cfg["plain_max"]:
            methods[plain] = dict(kind="clip", impl="plain", B=B, D=D)
            res = compare(mod, methods, progress=progress)
        else:  # not compared: one run, one call, for its memory
            methods["vtalign"]["reps"] = 0
            res = compare(mod, methods, min_rounds=1, short_rounds=1, progress=progress)
        st = record_compared("contrastive", f"memory B={B} D={D}", res)
        v = st["vtalign"]
        if plain in st:
            pl = st[plain]
            last_plain = (B, pl["peak_mib"])
            tail = f"{_sec(pl)} | {_fmt(pl['peak_mib'])} | {_ratio(st, plain)}"
        else:  # the dense loss's memory grows as B²: extrapolate from the largest point run
            b0, m0 = last_plain
            tail = f"not run | ≈ {_fmt(m0 * (B / b0) ** 2, 0)} (B² from B={b0:,}) |"
        out.append(f"| {B:,} | {_sec(v)} | {_fmt(v['peak_mib'])} | {tail} |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    worker_main(worker)
