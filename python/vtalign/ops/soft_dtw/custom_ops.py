"""The soft-DTW custom ops (`vtalign::soft_dtw_fwd`, `vtalign::soft_dtw_bwd`) with their fake
kernels and autograd, and the dispatch of a checked cost tensor to a backend."""
from __future__ import annotations

import torch

from vtalign.ops._common import compute_dtype, cpp
from vtalign.ops.soft_dtw.checks import Gamma
from vtalign.ops.soft_dtw.torch_backend import torch_backward, torch_forward
from vtalign.reference import soft_dtw as ref


def _triton_module():
    try:
        from vtalign.kernels import soft_dtw as tk
    except ImportError as e:  # pragma: no cover - only without the Triton kernels
        raise RuntimeError(f"backend='triton' needs vtalign.kernels.soft_dtw, which failed to import: {e}") from e
    for fn in ("soft_dtw_forward", "soft_dtw_backward", "soft_dtw_layout"):
        if not hasattr(tk, fn):
            raise RuntimeError(f"backend='triton': vtalign.kernels.soft_dtw has no {fn}() launcher")
    return tk


def _r_slots(P: int, N: int, M: int, bandwidth: int, dtype: torch.dtype, backend: str) -> int:
    """Elements per pair of the state the forward saves for the backward (backend-specific)."""
    if backend == "triton":
        return _triton_module().soft_dtw_layout(N, M, bandwidth)[3]
    if backend == "cpp":
        return int(cpp().soft_dtw_state_slots(P, N, M, dtype == torch.float64))
    return 2 * (N + 2) * (M + 2)


@torch.library.custom_op("vtalign::soft_dtw_fwd", mutates_args=())
def fwd_op(C: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor, y_len: torch.Tensor,
            bandwidth: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """C [P1, P2, N, M] (any strides with a unit last one) -> (values [P1·P2], R [P1·P2, S])."""
    P1, P2, N, M = C.shape
    P = P1 * P2
    if backend == "cpp":
        values = torch.empty(P, dtype=C.dtype)
        R = torch.empty(P, _r_slots(P, N, M, bandwidth, C.dtype, backend), dtype=C.dtype)
        cpp().soft_dtw_forward(C.detach().numpy(), gamma.detach().contiguous().numpy(),
                               x_len.contiguous().numpy(), y_len.contiguous().numpy(), bandwidth,
                               values.numpy(), R.numpy())
        return values, R
    C3 = C.reshape(P, N, M)
    if backend == "triton":
        return _triton_module().soft_dtw_forward(C3.contiguous(), gamma, x_len, y_len, bandwidth)
    return torch_forward(C3, gamma, x_len, y_len, bandwidth)


@fwd_op.register_fake
def _(C, gamma, x_len, y_len, bandwidth, backend):
    P1, P2, N, M = C.shape
    return C.new_empty(P1 * P2), C.new_empty(P1 * P2, _r_slots(P1 * P2, N, M, bandwidth, C.dtype, backend))


@torch.library.custom_op("vtalign::soft_dtw_bwd", mutates_args=())
def bwd_op(C: torch.Tensor, R: torch.Tensor, gamma: torch.Tensor, x_len: torch.Tensor,
            y_len: torch.Tensor, bandwidth: int, grad: torch.Tensor,
            backend: str, need_ec: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (grad·E [P1, P2, N, M] contiguous, ⟨E, C⟩ [P1·P2] float64), E = ∂value/∂C.
    ⟨E, C⟩ (for the γ-gradient) is zeros unless `need_ec`."""
    P1, P2, N, M = C.shape
    P = P1 * P2
    if backend == "cpp":
        E = torch.empty(P1, P2, N, M, dtype=C.dtype)
        EC = torch.empty(P, dtype=torch.float64)
        cpp().soft_dtw_backward(C.detach().numpy(), R.detach().contiguous().numpy(),
                                gamma.detach().contiguous().numpy(), x_len.contiguous().numpy(),
                                y_len.contiguous().numpy(), bandwidth,
                                grad.detach().to(C.dtype).contiguous().numpy(), E.numpy(), EC.numpy())
        return E, EC
    C3 = C.reshape(P, N, M)
    if backend == "triton":
        E3 = _triton_module().soft_dtw_backward(C3.contiguous(), R, gamma, x_len, y_len, bandwidth)
    else:
        E3 = torch_backward(C3, R, gamma, x_len, y_len, bandwidth)
    EC = inner_f64(E3, C3) if need_ec else torch.zeros(P, dtype=torch.float64, device=C.device)
    E3 = E3 * grad.to(E3.dtype)[:, None, None]
    return E3.reshape(P1, P2, N, M).contiguous(), EC


def inner_f64(E3: torch.Tensor, C3: torch.Tensor, budget: int = 64 << 20) -> torch.Tensor:
    """⟨E_p, C_p⟩ per pair in float64 (the γ-gradient value − ⟨E, C⟩ cancels at small γ),
    a few pairs at a time so the float64 copies stay within `budget` bytes."""
    P, N, M = E3.shape
    step = max(1, budget // max(1, 16 * N * M))
    return torch.cat([(E3[p:p + step].double() * C3[p:p + step].double()).sum((1, 2)) for p in range(0, P, step)])


@bwd_op.register_fake
def _(C, R, gamma, x_len, y_len, bandwidth, grad, backend, need_ec):
    P1, P2, N, M = C.shape
    return C.new_empty(P1, P2, N, M), C.new_empty(P1 * P2, dtype=torch.float64)


def _setup_context(ctx, inputs, output):
    C, gamma, x_len, y_len, bandwidth, backend = inputs
    values, R = output
    ctx.save_for_backward(C, R, gamma, x_len, y_len, values)
    ctx.bandwidth, ctx.backend = bandwidth, backend
    ctx.mark_non_differentiable(R)
    ctx.set_materialize_grads(False)  # else autograd zero-fills a gradient for R: a pass over [P, S]


def _fwd_backward(ctx, g_values, g_R):
    C, R, gamma, x_len, y_len, values = ctx.saved_tensors
    if g_values is None:
        g_values = torch.zeros_like(values)
    E, EC = bwd_op(C, R, gamma, x_len, y_len, ctx.bandwidth, g_values.contiguous(), ctx.backend,
                    bool(ctx.needs_input_grad[1]))
    gC = E if ctx.needs_input_grad[0] else None
    gg = None
    if ctx.needs_input_grad[1]:
        gg = g_values * (values - EC.to(values.dtype)) / gamma
    return gC, gg, None, None, None, None


fwd_op.register_autograd(_fwd_backward, setup_context=_setup_context)


def triton_gap(*ts: torch.Tensor) -> tuple[type[Exception], str] | None:
    """The Triton DP runs in float32 (half inputs are upcast): float64 would be rounded,
    so "auto" takes the torch backend for it on CUDA and an explicit "triton" refuses it."""
    if any(t.dtype == torch.float64 for t in ts):
        return TypeError, "computes in float32 and would round these float64 inputs"
    return None


def gamma_vector(gamma: Gamma, P1: int, P2: int, dtype, device) -> torch.Tensor:
    """γ as a [P1·P2] tensor (differentiable when γ is a tensor): a 0-d γ is shared,
    a [B] γ (only with P2 == 1) is per pair."""
    if isinstance(gamma, torch.Tensor):
        g = gamma.to(device=device, dtype=dtype)
        if g.dim() == 0:
            return g.expand(P1 * P2).contiguous()
        return g.reshape(P1 * P2)
    return torch.full((P1 * P2,), float(gamma), dtype=dtype, device=device)


def run_costs(C4: torch.Tensor, gamma: Gamma, xl: torch.Tensor, yl: torch.Tensor, w: int,
         backend: str) -> torch.Tensor:
    """values [P1·P2] for a checked C4 [P1, P2, N, M] and per-pair lengths (int64, on C4's
    device)."""
    P1, P2, N, M = C4.shape
    dt = compute_dtype(C4, backend=backend)
    C4 = C4.to(dt)
    if C4.stride(-1) != 1 or backend != "cpp":
        C4 = C4.contiguous()
    g = gamma_vector(gamma, P1, P2, dt, C4.device)
    dev = C4.device
    values, _ = fwd_op(C4, g, xl.to(dev), yl.to(dev), int(w), backend)
    return values


def reference_gamma(gamma: Gamma) -> Gamma:
    """γ as the float64 reference takes it (a tensor γ in float64, still differentiable)."""
    return gamma.double() if isinstance(gamma, torch.Tensor) else gamma


def reference_values(C3: torch.Tensor, gamma: Gamma, xl, yl, w: int) -> torch.Tensor:
    return ref.soft_dtw_cost(C3, reference_gamma(gamma), bandwidth=None if w < 0 else w, x_lengths=xl.tolist(),
                             y_lengths=yl.tolist())
