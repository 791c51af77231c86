"""Shared plumbing for every op family: backend choice, input checks, the compute dtype,
scale-safe unit rows and the eager shortcut for custom ops.

Checks run before any kernel so a bad call fails with an error that names the
argument, and never after half the work is done.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Sequence

import torch

from vtalign._optional import MissingDependency, require
from vtalign.kernels._launch import TRITON_DTYPES  # torch only: importable without triton

HALF_DTYPES = (torch.float16, torch.bfloat16)
BACKENDS = ("auto", "triton", "cpp", "torch", "reference")

try:  # the compiled CPU core is optional: a pure-Python install falls back to torch
    from vtalign import _C  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only on installs without a compiler
    _C = None


def has_cpp() -> bool:
    """True when the C++ module `vtalign._C` was built and imports."""
    return _C is not None


def cpp():
    """The compiled module `vtalign._C`; MissingDependency when this install lacks it."""
    if _C is None:
        raise MissingDependency(
            "backend='cpp' needs the compiled C++ core vtalign._C, which this install lacks: reinstall "
            "with a C++ compiler (pip install -e .) or use backend='torch'", name="vtalign._C")
    return _C


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str | None, tensors: Iterable[torch.Tensor], *,
                    triton_unsupported: tuple[type[Exception], str] | None = None) -> str:
    """Pick the concrete backend for `tensors`.

    "auto" (or the VTALIGN_BACKEND environment variable when `backend` is "auto"):
    CUDA tensors go to Triton, CPU tensors to C++ when built, else torch. Where the
    Triton kernel cannot take this input (`triton_unsupported`: the error an explicit
    "triton" raises and why, e.g. (TypeError, "... got torch.float64")),
    "auto" picks the torch backend, which runs on any device and dtype. An explicit
    backend that cannot run raises; nothing switches silently.
    """
    if backend is None:
        backend = "auto"
    if backend == "auto":
        backend = os.environ.get("VTALIGN_BACKEND", "auto") or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    tensors = list(tensors)
    on_cuda = any(t.is_cuda for t in tensors)
    if backend == "auto":
        if on_cuda:
            backend = "torch" if triton_unsupported else "triton"
        else:
            backend = "cpp" if has_cpp() else "torch"
    if backend == "triton" and triton_unsupported:
        err, why = triton_unsupported
        raise err(f"backend='triton' {why}; use backend='torch' (or 'auto', which does)")
    if backend == "triton":
        # triton has Linux wheels only, so elsewhere vtalign installs without it
        require("triton", None, "backend='triton'")
        if not on_cuda and not triton_interpreting():
            raise ValueError(
                "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
            )
    elif backend == "cpp":
        cpp()
        if on_cuda:
            raise ValueError("backend='cpp' needs CPU tensors; got CUDA tensors")
    return backend




def triton_dtype_gap(*ts: torch.Tensor) -> tuple[type[Exception], str] | None:
    """Why the Triton kernels cannot take these tensors' dtypes (for `resolve_backend`)."""
    for t in ts:
        if t.dtype not in TRITON_DTYPES:
            return TypeError, f"supports float32, float16 and bfloat16 inputs, got {t.dtype}"
    return None


class full_precision_matmul(contextlib.ContextDecorator):
    """Full float32 GEMMs inside, whatever the caller set with
    `torch.set_float32_matmul_precision` (restored on exit). Where a GEMM result is
    differenced (|x|² + |y|² − 2x·y, centred Gram sums), TF32's 10-bit mantissa would
    leave errors of about 1e-3·|x|²; float64 GEMMs are unaffected either way."""

    def __enter__(self):
        self._prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        return self

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self._prev)
        return False


def check_tensor(name: str, t, *, ndims: Sequence[int] | None = None, floating: bool = True) -> None:
    """Type, dimensionality, emptiness and dtype checks with the argument named."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor: it has a shape but no values to compute on")
    if ndims is not None and t.dim() not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")


def check_finite(name: str, t: torch.Tensor, *, layer_major: bool = False) -> None:
    """Raise on NaN/Inf, naming the first offending element (layer and row for [L, N, D])."""
    # One sum is a single streaming pass with no mask allocated; NaN and Inf
    # propagate into it, so a finite sum proves the tensor finite. Only a
    # non-finite sum (a bad value, or finite values overflowing) pays for the
    # exact element-wise search. (sum(dtype=...) would materialise a cast copy.)
    if math.isfinite(float(_finite_total(t))):
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    pos = [int(p) for p in bad.nonzero()[0].tolist()]
    kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
    if layer_major and t.dim() == 3:
        where = f"layer {pos[0]}, row {pos[1]}"
    elif t.dim() == 2:
        where = f"row {pos[0]}"
    else:
        where = f"index {tuple(pos)}"
    raise ValueError(f"{name} contains {kind} values (first at {where})")


def _finite_total(t: torch.Tensor) -> torch.Tensor:
    # half sums accumulate in float32 (a float16 result would overflow past 65,504)
    return t.detach().sum(dtype=torch.float32) if t.dtype in HALF_DTYPES else t.detach().sum()


class DeferredChecks:
    """Checks that read tensor values (NaN/Inf, the sign of a scale, a mask row with no
    positive), gathered as device-side flags and read back with one host sync however
    many there are: each sync stalls the CUDA stream and rules out CUDA-graph capture.
    Only when a flag is up does its precise check run again, to raise the error that
    names the argument (and the row, layer or column). Everything still happens before
    any kernel runs.
    """

    def __init__(self) -> None:
        self._flags: list[torch.Tensor] = []
        self._checks: list[Callable[[], None]] = []

    def add(self, bad: torch.Tensor, check: Callable[[], None]) -> None:
        """`bad`: a one-element bool tensor, True when `check()` may raise."""
        self._flags.append(bad.reshape(()))
        self._checks.append(check)

    def finite(self, name: str, t: torch.Tensor, *, layer_major: bool = False) -> None:
        """`check_finite(name, t)`, deferred: a finite sum proves the tensor finite."""
        self.add(~torch.isfinite(_finite_total(t)), lambda: check_finite(name, t, layer_major=layer_major))

    def run(self) -> None:
        """Read every flag with one sync; run the precise check of each raised flag."""
        if not self._flags:
            return
        dev = self._flags[0].device
        bad = torch.stack([f.to(device=dev, dtype=torch.bool) for f in self._flags]).tolist()
        for flag, check in zip(bad, self._checks):
            if flag:
                check()
        self._flags, self._checks = [], []


def check_int(name: str, v, *, lo: int | None = None, hi: int | None = None) -> int:
    """`v` as an int, refusing bools, floats and strings and values outside [lo, hi]."""
    import numbers

    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{name} must be in {span}, got {v}")
    return v


def check_choice(name: str, v, choices: Sequence) -> None:
    """Refuse `v` unless it is one of `choices`, listing them."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {v!r}")


PRECISIONS = ("tf32x3", "tf32", "ieee")


def check_precision(precision) -> None:
    """Refuse a float32 GEMM precision the Triton kernels do not have."""
    check_choice("precision", precision, PRECISIONS)


def compute_dtype(*ts: torch.Tensor, backend: str = "") -> torch.dtype:
    """The dtype an op computes in: float64 when any input is float64 (the Triton kernels
    compute in float32 and refuse or reroute float64 beforehand), float32 otherwise."""
    if backend != "triton" and any(t.dtype == torch.float64 for t in ts):
        return torch.float64
    return torch.float32


def check_same_device(**tensors: torch.Tensor) -> None:
    devs = {n: t.device for n, t in tensors.items()}
    if len(set(devs.values())) > 1:
        raise ValueError(f"tensors must be on one device, got {devs}")


def eager_op(op, impl):
    """A caller for a custom op without autograd: `op` under torch.compile (what gets
    traced: schema, fake shapes), its Python implementation `impl` in eager mode, under
    no_grad as the op would be. Why: the custom-op dispatch imports torch._dynamo on its
    first call (1.4 s here, a sixth of `vtalign demo`) and costs ~0.1 ms per call."""

    def call(*args):
        if torch.compiler.is_compiling():
            return op(*args)
        with torch.no_grad():
            return impl(*args)

    return call


# --------------------------------------------------------------------------- unit rows
# Unit rows that do not depend on the scale of their input.
#
# Every cosine quantity in vtalign (kNN, overlap, CKA on unit rows, the contrastive
# losses, the cosine soft-DTW cost) starts by normalising rows. `x / ||x||` computed
# directly overflows once an entry passes sqrt(float max) (1.8e19 in float32: ||x||
# becomes inf and the row becomes 0) and underflows for tiny rows (the norm is 0 and
# the row stays 0), so the answer would change with the scale of the input. Here each
# row is first multiplied by the power of two that brings its largest entry into
# [0.5, 1): its norm then lies in [0.5, sqrt(D)], and a power of two scales exactly,
# so duplicated rows stay bit-identical (ties stay ties) and D = 1 still gives ±1.


def _pow2(n: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2**n exactly, built from the exponent bits (n within the normal range of dtype)."""
    if dtype == torch.float64:
        return ((n.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((n.to(torch.int32) + 127) << 23).view(torch.float32)


def unit_rows(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows of `x [..., D]` scaled to unit L2 norm along the last axis; zero rows stay zero.

    The result does not change with the scale of x (any finite scale, subnormal rows
    included) and is differentiable. fp16/bf16 inputs are normalised in float32.
    `dtype` is the dtype to compute in and return (default: x's, float32 for fp16/bf16
    computed then cast back to x's dtype).
    """
    out_dtype = dtype or x.dtype
    work = dtype or (torch.float32 if x.dtype in HALF_DTYPES else x.dtype)
    if work in HALF_DTYPES:
        work = torch.float32
    xw = x.to(work)
    if xw.numel() == 0:
        return xw.to(out_dtype)
    amax = xw.detach().abs().amax(dim=-1, keepdim=True)
    _, e = torch.frexp(amax)  # amax = m * 2^e with m in [0.5, 1); e = 0 for a zero row
    # 2^-e in two factors: for a subnormal row -e passes the largest normal exponent
    h = torch.div(-e, 2, rounding_mode="floor")
    xs = xw * _pow2(h, work) * _pow2(-e - h, work)
    norm = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    # true division, as F.normalize does: exact cases (D = 1, duplicated rows) stay exact
    return (xs / norm.clamp_min(torch.finfo(work).tiny)).to(out_dtype)


def unit_rows_for(x: torch.Tensor, dtype: torch.dtype, backend: str) -> torch.Tensor:
    """`unit_rows` in the op's compute dtype, except that Triton keeps fp16/bf16 rows in their
    dtype (normalised in float32 first) so that its dots run on the half-precision tensor cores."""
    if backend == "triton" and x.dtype in HALF_DTYPES:
        return unit_rows(x)
    return unit_rows(x, dtype)
