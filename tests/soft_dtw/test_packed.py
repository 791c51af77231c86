"""The Triton soft-DTW kernels that pack several pairs into one program (`soft_dtw_pairs`):
P lane groups of LANES = next_pow2(W) lanes step through the diagonals of P pairs
together. The per-cell arithmetic is the one-pair kernels' (shared @triton.jit helpers),
so values and E must be the same numbers, and match the float64 reference, with ragged
lengths, per-pair γ, bands and a batch that does not divide by P.

Runs on the GPU when the tests have one (TRITON_INTERPRET unset by tests/conftest.py),
else in the interpreter; shapes stay tiny for the interpreter.
"""

import pytest
import torch

from tests._device import TRITON_DEVICE
from tests.soft_dtw._kernels import compiled_barriers, run, same
from vtalign.kernels.soft_dtw import PACK_BLOCK, soft_dtw_layout, soft_dtw_pairs, soft_dtw_plan
from vtalign.reference import soft_dtw as ref


def lengths(gen, B, N, M):
    return ([int(v) for v in torch.randint(1, N + 1, (B,), generator=gen)],
            [int(v) for v in torch.randint(1, M + 1, (B,), generator=gen)])


def test_packing_rule():
    assert PACK_BLOCK == 128
    # one pair, or diagonals wider than half a packed program: the one-pair kernels
    assert soft_dtw_pairs(1, 8) == 1 and soft_dtw_pairs(64, 65) == 1 and soft_dtw_pairs(64, 1024) == 1
    # else P = 128 // next_pow2(W): every diagonal of a pair fits its lane group
    assert [soft_dtw_pairs(2, W) for W in (1, 2, 3, 7, 8, 16, 33, 64)] == [128, 64, 32, 16, 16, 8, 2, 2]
    plan = soft_dtw_plan(37, 7)
    assert (plan["pairs"], plan["LANES"], plan["BLOCK"], plan["grid"]) == (16, 8, 128, (3,))
    assert soft_dtw_plan(37, 7, block=16)["pairs"] == 1  # `block` asks for the one-pair kernels
    assert soft_dtw_plan(5, 7, pairs=2)["BLOCK"] == 16 and soft_dtw_plan(5, 7, pairs=2)["grid"] == (3,)
    for bad in (dict(pairs=3), dict(pairs=256), dict(pairs=2, block=16)):
        with pytest.raises(ValueError, match="pairs must be"):
            soft_dtw_plan(5, 7, **bad)
    # a band caps W, so long banded pairs pack too
    assert soft_dtw_pairs(8, soft_dtw_layout(2048, 2048, 3)[1]) == 32


@pytest.mark.parametrize("B,N,M,band,pairs", [
    (5, 7, 9, None, 2),     # three programs, the last holding one pair
    (5, 7, 9, None, None),  # the launchers' choice: P = 16, one program, 11 idle groups
    (6, 9, 9, 1, 4),        # banded storage (W = 2 slots per diagonal)
    (3, 6, 6, 4, 2),        # a band too wide to save memory: packed storage, band still applied
    (7, 1, 5, None, 4),     # one-row pairs: LANES = 1
])
def test_packed_equals_one_pair_kernels_and_reference(gen, B, N, M, band, pairs):
    C = torch.rand(B, N, M, generator=gen)
    xl, yl = lengths(gen, B, N, M)
    w = -1 if band is None else max([band] + [ref.min_bandwidth(n, m) for n, m in zip(xl, yl)])
    gamma = torch.rand(B, generator=gen) + 0.1
    assert soft_dtw_plan(B, soft_dtw_layout(N, M, w)[1], pairs=pairs)["pairs"] > 1
    v, E = run(C, gamma, xl, yl, w, pairs=pairs)
    v1, E1 = run(C, gamma, xl, yl, w, pairs=1)
    same(v, v1)
    same(E, E1)
    kw = dict(bandwidth=None if w < 0 else w, x_lengths=xl, y_lengths=yl)
    torch.testing.assert_close(v.double(), ref.soft_dtw_cost(C.double(), gamma.double(), **kw), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(E.double(), ref.soft_dtw_alignment_cost(C.double(), gamma.double(), **kw),
                               rtol=1e-5, atol=2e-5)


def test_packed_edge_cases(gen):
    # an unreachable end (band below the minimum), an +inf wall, and lengths outside
    # [1, N] (which the ops layer rejects; the kernel clamps them) next to healthy pairs
    B, N, M = 6, 5, 6
    C = torch.rand(B, N, M, generator=gen)
    C[2, 2, :] = float("inf")
    xl, yl = [5, 0, 5, 9, 3, 2], [6, 4, 6, 6, 1, 2]
    v, E = run(C, 0.5, xl, yl, 0, pairs=2)
    v1, E1 = run(C, 0.5, xl, yl, 0, pairs=1)
    same(v, v1)
    same(E, E1)
    assert torch.isinf(v[[1, 2]]).all() and (E[1] == 0).all() and not torch.isnan(E).any()


def test_ops_layer_packs_ragged_batches(gen):
    # through vtalign.soft_dtw_cost (the custom ops and autograd) on the launchers' choice
    import vtalign

    B, N, M = 9, 6, 7
    C = torch.rand(B, N, M, generator=gen, dtype=torch.float64)
    xl, yl = lengths(gen, B, N, M)
    assert soft_dtw_pairs(B, soft_dtw_layout(N, M, 2)[1]) > 1
    w = max([2] + [ref.min_bandwidth(n, m) for n, m in zip(xl, yl)])
    Ct = C.float().to(TRITON_DEVICE).requires_grad_()
    v = vtalign.soft_dtw_cost(Ct, 0.3, bandwidth=w, x_lengths=xl, y_lengths=yl, backend="triton")
    v.sum().backward()
    Cr = C.clone().requires_grad_()
    rv = vtalign.soft_dtw_cost(Cr, 0.3, bandwidth=w, x_lengths=xl, y_lengths=yl, backend="reference")
    rv.sum().backward()
    torch.testing.assert_close(v.detach().cpu().double(), rv.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Ct.grad.cpu().double(), Cr.grad, rtol=1e-5, atol=2e-5)


def test_compiled_packed_kernels_keep_the_diagonal_barrier():
    # as for the one-pair kernels (tests/soft_dtw/test_triton_kernels.py): a bar.sync per
    # diagonal, and no ld.global.nc (its non-coherent path need not see the CTA's stores)
    seen = compiled_barriers("soft_dtw:packed:LANES=8")
    assert set(seen) == {"_soft_dtw_fwd_packed_kernel", "_soft_dtw_bwd_packed_kernel"}, seen
    assert all(bars >= 1 and nc == 0 for bars, nc in seen.values()), seen
