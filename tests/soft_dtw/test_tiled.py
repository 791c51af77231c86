"""The tiled Triton soft-DTW path (`soft_dtw_tile`): each pair's DP cut into T x T tiles,
one launch per anti-diagonal of tiles (forward from the first, backward from the last),
program (pair, tile) sweeping its tile's 2T-1 inner diagonals and reading the neighbouring
tiles' R (forward) or E (backward) that earlier launches wrote. The per-cell arithmetic
is the one-pair kernels' (shared @triton.jit helpers) and the weights go to the same
state layout, so values and E must be the same numbers as the one-pair kernels', and
match the float64 reference, with ragged lengths, per-pair γ, bands, lengths that are
not multiples of T, and unreachable ends.

Runs on the GPU when the tests have one, else in the interpreter; T = 16 through the
`tile` override keeps the shapes small enough for the interpreter.
"""

import pytest
import torch

from tests._device import TRITON_DEVICE
from tests.soft_dtw._kernels import compiled_barriers, run, same
from vtalign.kernels import soft_dtw as sk
from vtalign.kernels.soft_dtw import TILE, TILED_MAX_B, soft_dtw_layout, soft_dtw_tile
from vtalign.reference import soft_dtw as ref


def test_tiling_rule():
    assert TILE == 64 and TILED_MAX_B == 132
    # small batch, a diagonal crossing >= 2 tiles: tiled
    assert soft_dtw_tile(4, 2048, 2048, 2048) == 64 and soft_dtw_tile(131, 128, 300, 128) == 64
    # a full GPU's worth of pairs, short pairs, or a narrow band: the other paths
    assert soft_dtw_tile(132, 2048, 2048, 2048) == 0 and soft_dtw_tile(1, 127, 2048, 127) == 0
    assert soft_dtw_tile(1, 2048, 2048, soft_dtw_layout(2048, 2048, 63)[1]) == 0
    assert soft_dtw_tile(1, 2048, 2048, soft_dtw_layout(2048, 2048, 127)[1]) == 64
    # the override: any T of TILES, or 0 for the other paths
    assert soft_dtw_tile(500, 8, 8, 8, tile=16) == 16 and soft_dtw_tile(1, 4096, 4096, 4096, tile=0) == 0
    with pytest.raises(ValueError, match="tile must be"):
        soft_dtw_tile(1, 64, 64, 64, tile=24)
    # one launch per tile-diagonal, each with that diagonal's tile count
    assert sk._tiled_launches(40, 23, 16) == [(0, 1), (1, 2), (2, 2), (3, 1)]
    assert len(sk._tiled_launches(2048, 2048, 64)) == 63


@pytest.mark.parametrize("B,N,M,band,ragged", [
    (1, 35, 23, None, False),  # N != M, neither a multiple of T: 3 x 2 tiles, ragged edges
    (3, 30, 20, None, True),   # ragged lengths, per-pair γ, B = 3
    (2, 30, 30, 3, True),      # banded storage (W = 4 slots per diagonal), ragged
    (1, 18, 33, 25, False),    # a band too wide to save memory: packed storage, band applied
])
def test_tiled_equals_one_pair_kernels_and_reference(gen, B, N, M, band, ragged):
    C = torch.rand(B, N, M, generator=gen)
    if ragged:
        xl = [int(v) for v in torch.randint(N // 2, N + 1, (B,), generator=gen)]
        yl = [int(v) for v in torch.randint(M // 2, M + 1, (B,), generator=gen)]
        xl[0], yl[0] = N, M
    else:
        xl, yl = [N] * B, [M] * B
    w = -1 if band is None else max([band] + [ref.min_bandwidth(n, m) for n, m in zip(xl, yl)])
    gamma = torch.rand(B, generator=gen) + 0.1
    v, E = run(C, gamma, xl, yl, w, tile=16)
    v1, E1 = run(C, gamma, xl, yl, w, pairs=1)
    same(v, v1)
    same(E, E1)
    kw = dict(bandwidth=None if w < 0 else w, x_lengths=xl, y_lengths=yl)
    torch.testing.assert_close(v.double(), ref.soft_dtw_cost(C.double(), gamma.double(), **kw), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(E.double(), ref.soft_dtw_alignment_cost(C.double(), gamma.double(), **kw),
                               rtol=1e-5, atol=2e-5)


def test_tiled_edge_cases(gen):
    # a healthy pair, n = 0 (which the ops layer rejects; the kernels clamp it), an
    # unreachable end (band 0 with n != m) and an +inf wall, on 2 x 2 tiles of T = 16;
    # as in the one-pair kernels, an unreachable end keeps its own E = 1 and nothing else
    B, N, M = 4, 18, 18
    C = torch.rand(B, N, M, generator=gen)
    C[3, 5, :] = float("inf")
    xl, yl = [18, 0, 17, 18], [18, 4, 18, 18]
    v, E = run(C, 0.5, xl, yl, 0, tile=16)
    v1, E1 = run(C, 0.5, xl, yl, 0, pairs=1)
    same(v, v1)
    same(E, E1)
    assert torch.isfinite(v[0]) and torch.isinf(v[1:]).all() and (E[1] == 0).all() and not torch.isnan(E).any()
    assert E[2].sum() == 1 and E[2, 16, 17] == 1 and E[3].sum() == 1


def test_ops_layer_takes_the_tiled_path(gen, monkeypatch):
    # through vtalign.soft_dtw_cost (custom ops, autograd) on the launchers' own choice,
    # with TILE lowered to 16 so that one 33 x 40 pair is tiled
    import vtalign

    monkeypatch.setattr(sk, "TILE", 16)
    N, M = 33, 40
    assert soft_dtw_tile(1, N, M, soft_dtw_layout(N, M, -1)[1]) == 16
    calls = []
    real = sk._tiled_launches
    monkeypatch.setattr(sk, "_tiled_launches", lambda *a: calls.append(a) or real(*a))
    C = torch.rand(1, N, M, generator=gen, dtype=torch.float64)
    Ct = C.float().to(TRITON_DEVICE).requires_grad_()
    v = vtalign.soft_dtw_cost(Ct, 0.3, backend="triton")
    v.sum().backward()
    assert calls == [(N, M, 16), (N, M, 16)]  # forward and backward
    Cr = C.clone().requires_grad_()
    rv = vtalign.soft_dtw_cost(Cr, 0.3, backend="reference")
    rv.sum().backward()
    torch.testing.assert_close(v.detach().cpu().double(), rv.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Ct.grad.cpu().double(), Cr.grad, rtol=1e-5, atol=2e-5)


def test_compiled_tiled_kernels_keep_the_diagonal_barrier():
    # as for the one-pair and packed kernels: a bar.sync per inner diagonal, and no
    # ld.global.nc (its non-coherent path need not see the CTA's own stores of R or E)
    seen = compiled_barriers("soft_dtw:tiled")
    assert set(seen) == {"_soft_dtw_fwd_tiled_kernel", "_soft_dtw_bwd_tiled_kernel"}, seen
    assert all(bars >= 1 and nc == 0 for bars, nc in seen.values()), seen
