"""`vtalign selftest`: every op on this machine's device against the float64 reference.

What a user runs after installing vtalign on their own machine (`vtalign selftest
--device cuda` on a GPU): each op on moderate shapes, forward and gradients, compared
with the plain float64 definitions in `vtalign.reference`, and a pass/fail table with
the versions that matter (torch, triton, CUDA, driver, GPU). Exit status 0 when every
check passes, 1 otherwise.

Tolerances are stated per check. float32 runs with the ops' defaults: Triton's kNN and
contrastive dots use 3xTF32 (about float32 accuracy), the C++ core plain float32.
kNN neighbours may differ from the reference only at near-ties: a mismatched entry
passes when the reference similarity it replaces is within the value tolerance of the
one the op chose.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import vtalign
from vtalign.reference import contrastive as ref_contrastive
from vtalign.reference import knn as ref_knn
from vtalign.reference import soft_dtw as ref_soft_dtw


@dataclass
class Check:
    """One comparison: `error` against `tolerance` (both in the check's own unit)."""
    op: str
    what: str
    shape: str
    error: float
    tolerance: float
    seconds: float

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got − want| / max(1, max |want|), in float64 on the CPU."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    return float((g - w).abs().max() / max(1.0, float(w.abs().max())))


def neighbour_gap(queries: torch.Tensor, keys: torch.Tensor, idx: torch.Tensor, ref_vals: torch.Tensor) -> float:
    """How far an op's neighbours are from the reference's, in similarity: max over slots
    of |float64 similarity of the chosen key − the reference's value at that rank|.

    0 when the lists agree; a neighbour other than the reference's is fine only at a
    near-tie, where this stays within the value tolerance. `queries` [L, M, D] and
    `keys` [L, N, D] are the unit rows in float64, `idx` [L, M, k], on one device.
    """
    L = queries.shape[0]
    idx = idx.to(keys.device)
    chosen = torch.einsum("lmd,lmkd->lmk", queries, keys[torch.arange(L, device=keys.device)[:, None, None], idx])
    return float((chosen - ref_vals.to(chosen.device)).abs().max())


def _knn_checks(dev, backend, small, gen) -> list[Check]:
    L, N, D, k = (2, 96, 32, 5) if small else (2, 2048, 256, 10)
    x = torch.randn(L, N, D, generator=gen)
    t0 = time.perf_counter()
    v, i = vtalign.cosine_knn(x.to(dev), k, backend=backend)
    dt = time.perf_counter() - t0
    rv, ri = ref_knn.cosine_knn(x.double(), k)
    tol = 1e-5
    v, i = v.cpu().double(), i.cpu()
    xn = torch.nn.functional.normalize(x.double(), dim=-1)
    tie_err = neighbour_gap(xn, xn, i, rv)
    shape = f"[{L}, {N}, {D}] k={k}"
    return [Check("cosine_knn", "values", shape, rel_error(v, rv), tol, dt),
            Check("cosine_knn", "neighbours (similarity gap at mismatches)", shape,
                  tie_err if not torch.equal(i, ri) else 0.0, tol, 0.0)]


def _overlap_checks(dev, backend, small, gen) -> list[Check]:
    La, Lb, N, k = (3, 2, 64, 5) if small else (6, 5, 4096, 10)
    ia = torch.stack([torch.stack([torch.randperm(N, generator=gen)[:k] for _ in range(N)]) for _ in range(La)])
    ib = torch.stack([torch.stack([torch.randperm(N, generator=gen)[:k] for _ in range(N)]) for _ in range(Lb)])
    t0 = time.perf_counter()
    got = vtalign.knn_overlap(ia.to(dev), ib.to(dev), backend=backend)
    dt = time.perf_counter() - t0
    # integer counts, so only the final division rounds
    return [Check("knn_overlap", "mean overlap", f"{La}x{Lb} pairs, N={N}, k={k}",
                  rel_error(got, ref_knn.knn_overlap(ia, ib)), 1e-12, dt)]


def grad_checks(op: str, shape: str, fn: Callable, ref_fn: Callable, inputs: list[torch.Tensor], dev,
                tol: float, grad_tol: float | None = None,
                grad_error: Callable[[torch.Tensor, torch.Tensor], float] = rel_error) -> list[Check]:
    """`fn(*inputs)` on `dev` (a scalar), forward and backward, against `ref_fn` on float64
    copies of `inputs` (on their own device): the value, and each floating input's
    gradient measured by `grad_error` against `grad_tol` (default: `rel_error`, `tol`)."""
    xs = [t.detach().to(dev, copy=True).requires_grad_(t.is_floating_point()) for t in inputs]
    t0 = time.perf_counter()
    out = fn(*xs)
    out.backward()
    dt = time.perf_counter() - t0
    rs = [t.detach().double().requires_grad_() if t.is_floating_point() else t for t in inputs]
    want = ref_fn(*rs)
    want.backward()
    checks = [Check(op, "value", shape, rel_error(out, want), tol, dt)]
    for n, (x, r) in enumerate(zip(xs, rs)):
        if x.is_floating_point():
            checks.append(Check(op, f"gradient of input {n}", shape, grad_error(x.grad, r.grad),
                                tol if grad_tol is None else grad_tol, 0.0))
    return checks


def _contrastive_checks(dev, backend, small, gen) -> list[Check]:
    B, D = (48, 32) if small else (1024, 256)
    a, b = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
    out = grad_checks("contrastive_loss", f"B={B}, D={D}",
                      lambda x, y: vtalign.contrastive_loss(x, y, 10.0, backend=backend),
                      lambda x, y: ref_contrastive.contrastive_loss(x, y, 10.0), [a, b], dev, 1e-4)
    B, T, D = (24, 4, 32) if small else (256, 8, 128)
    ta, vb = torch.randn(B, T, D, generator=gen), torch.randn(B, T, D, generator=gen)
    valid = torch.rand(B, T, generator=gen) < 0.7
    valid[:, 0] = True
    for pool in ("mean", "max", "lse"):
        out += grad_checks(f"slot_contrastive_loss[{pool}]", f"B={B}, T={T}, D={D}",
                           lambda x, y, pool=pool: vtalign.slot_contrastive_loss(
                               x, y, valid.to(dev), 10.0, pool=pool, backend=backend),
                           lambda x, y, pool=pool: ref_contrastive.slot_contrastive_loss(x, y, valid, 10.0, pool=pool),
                           [ta, vb], dev, 1e-4)
    return out


def _soft_dtw_checks(dev, backend, small, gen) -> list[Check]:
    B, N, M, D = (3, 12, 10, 8) if small else (4, 48, 40, 16)
    x = torch.randn(B, N, D, generator=gen) / D ** 0.5
    y = torch.randn(B, M, D, generator=gen) / D ** 0.5
    out = grad_checks("soft_dtw", f"B={B}, N={N}, M={M}, D={D}",
                      lambda p, q: vtalign.soft_dtw(p, q, 0.5, backend=backend).sum(),
                      lambda p, q: ref_soft_dtw.soft_dtw(p, q, 0.5).sum(), [x, y], dev, 1e-4)
    B1 = 3 if small else 6
    xp = torch.randn(B1, N, D, generator=gen) / D ** 0.5
    out += grad_checks("soft_dtw_pairwise", f"{B1}x{B1} pairs, N={N}, D={D}",
                       lambda p: vtalign.soft_dtw_pairwise(p, p, 0.5, backend=backend).sum(),
                       lambda p: ref_soft_dtw.soft_dtw_pairwise(p, p, 0.5).sum(), [xp], dev, 1e-4)
    return out


SUITES = {"knn": _knn_checks, "overlap": _overlap_checks, "contrastive": _contrastive_checks,
          "soft_dtw": _soft_dtw_checks}


def environment(device: torch.device) -> dict[str, str]:
    """The versions a bug report needs."""
    env = {"vtalign": vtalign.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "device": str(device)}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "not installed"
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda (torch build)"] = str(torch.version.cuda)
        cap = torch.cuda.get_device_capability(device)
        env["compute capability"] = f"sm_{cap[0]}{cap[1]}"
        try:
            import subprocess

            drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            env["driver"] = drv.stdout.strip().splitlines()[0] if drv.returncode == 0 else "unknown"
        except (OSError, subprocess.SubprocessError, IndexError):
            env["driver"] = "unknown"
    return env


def run_selftest(device: str = "cpu", *, backend: str = "auto", small: bool = False,
                 seed: int = 0) -> tuple[list[Check], dict[str, str]]:
    """Every check on `device`; returns (checks, environment). `small` shrinks the shapes
    (for the Triton interpreter on a CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available to torch here")
    gen = torch.Generator().manual_seed(seed)
    checks: list[Check] = []
    for fn in SUITES.values():
        checks += fn(dev, backend, small, gen)
    return checks, environment(dev)


def markdown(checks: list[Check], env: dict[str, str]) -> str:
    lines = ["| op | check | shape | error | tolerance | seconds | result |", "|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.op} | {c.what} | {c.shape} | {c.error:.2e} | {c.tolerance:.0e} | "
                     f"{c.seconds:.3f} | {'pass' if c.passed else '**FAIL**'} |")
    n_fail = sum(not c.passed for c in checks)
    head = ", ".join(f"{k} {v}" for k, v in env.items())
    verdict = "all checks passed" if n_fail == 0 else f"{n_fail} of {len(checks)} checks FAILED"
    return f"{head}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n"
