"""The "torch" backend: the soft-DTW recurrences in torch ops (any device, any float dtype)."""
from __future__ import annotations

import torch


def _torch_valid(N: int, M: int, xl: torch.Tensor, yl: torch.Tensor, w: int, device) -> torch.Tensor:
    """Bool [P, N, M]: inside the pair's block and band."""
    i = torch.arange(N, device=device)[None, :, None]
    j = torch.arange(M, device=device)[None, None, :]
    n = xl.to(device)[:, None, None]
    m = yl.to(device)[:, None, None]
    ok = (i < n) & (j < m)
    if w >= 0:
        band = (i * (m - 1) - j * (n - 1)).abs() <= w * (torch.minimum(n, m) - 1)
        ok &= band | (torch.minimum(n, m) == 1)
    return ok


def torch_forward(C: torch.Tensor, gamma: torch.Tensor, xl: torch.Tensor, yl: torch.Tensor, w: int):
    """Anti-diagonal recurrence in torch ops (vectorised over pairs and each diagonal) ->
    (values [P], state [P, 2·(N+2)·(M+2)]): as in the C++ and Triton kernels, the state is
    the soft-min weight each cell gave its up and its left predecessor (padded layout;
    the diagonal one is 1 minus both; w_up = -1 marks a cell at +inf). Weights rebuilt
    from R in the backward would carry R's rounding over γ."""
    P, N, M = C.shape
    dev = C.device
    inf = float("inf")
    valid = _torch_valid(N, M, xl, yl, w, dev)
    R = torch.full((P, N + 2, M + 2), inf, dtype=C.dtype, device=dev)
    R[:, 0, 0] = 0
    Wt = torch.zeros(P, 2, N + 2, M + 2, dtype=C.dtype, device=dev)
    g = gamma[:, None]
    for d in range(N + M - 1):
        i = torch.arange(max(0, d - M + 1), min(N - 1, d) + 1, device=dev)
        j = d - i
        v = torch.stack([R[:, i, j], R[:, i, j + 1], R[:, i + 1, j]])  # diagonal, up, left
        mn = v.min(0).values
        fin = torch.isfinite(mn)
        sh = torch.where(fin, mn, torch.zeros_like(mn))
        e = torch.exp(-(v - sh) / g)
        s = torch.where(fin, e.sum(0), torch.ones_like(mn))
        val = C[:, i, j] + sh - g * torch.log(s)
        live = valid[:, i, j] & fin & (val < inf)
        R[:, i + 1, j + 1] = torch.where(live, val, torch.full_like(val, inf))
        Wt[:, 0, i + 1, j + 1] = torch.where(live, e[1] / s, torch.full_like(val, -1.0))
        Wt[:, 1, i + 1, j + 1] = torch.where(live, e[2] / s, torch.zeros_like(val))
    ar = torch.arange(P, device=dev)
    values = R[ar, xl.to(dev), yl.to(dev)]
    return values, Wt.reshape(P, -1)


def torch_backward(C, state, gamma, xl, yl, w):
    """E [P, N, M] by the backward recurrence over the forward's weights; successors outside
    block/band weigh 0."""
    P, N, M = C.shape
    dev = C.device
    Wt = state.view(P, 2, N + 2, M + 2)
    valid = _torch_valid(N, M, xl, yl, w, dev)
    Vp = torch.zeros(P, N + 2, M + 2, dtype=torch.bool, device=dev)
    Vp[:, 1:N + 1, 1:M + 1] = valid
    w_up = torch.where(Vp, Wt[:, 0].clamp(min=0), 0)
    w_left = torch.where(Vp, Wt[:, 1], 0)
    w_diag = torch.where(Vp & (Wt[:, 0] >= 0), (1 - Wt[:, 0] - Wt[:, 1]).clamp(min=0), 0)
    E = torch.zeros(P, N + 2, M + 2, dtype=C.dtype, device=dev)
    xl_d, yl_d = xl.to(dev)[:, None], yl.to(dev)[:, None]
    for d in range(N + M - 2, -1, -1):
        i = torch.arange(max(0, d - M + 1), min(N - 1, d) + 1, device=dev)
        j = d - i
        I, J = i + 1, j + 1
        acc = (E[:, I + 1, J] * w_up[:, I + 1, J] + E[:, I, J + 1] * w_left[:, I, J + 1]
               + E[:, I + 1, J + 1] * w_diag[:, I + 1, J + 1])
        end = (I[None] == xl_d) & (J[None] == yl_d)
        E[:, I, J] = torch.where(end, torch.ones_like(acc), torch.where(valid[:, i, j], acc, torch.zeros_like(acc)))
    return E[:, 1:N + 1, 1:M + 1].contiguous()
