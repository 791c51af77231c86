"""Triton soft-DTW kernels against the float64 reference (docs/design.md §3.4): on the GPU
when there is one, else in the interpreter (tests/_device.py).

Shapes stay tiny: the interpreter pays per program and per op, and a program
walks n+m-1 diagonals one after another.

Tolerances: the DP has no dot products, so no TF32 on a GPU; what differs there is
exp2/log2 on the approximate units (~2^-22 relative instead of correctly rounded),
which at most doubles the float32 DP's rounding: only the bounds that the interpreter
meets with no room (V_RTOL) are looser on a GPU.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests._device import ON_CUDA, TRITON_DEVICE
from tests.soft_dtw._kernels import compiled_barriers
from vtalign.kernels.soft_dtw import soft_dtw_backward, soft_dtw_forward, soft_dtw_layout
from vtalign.reference import soft_dtw as ref

V_RTOL = 2e-6 if ON_CUDA else 1e-6  # values at small γ (test_alignment_accuracy_at_small_gamma)


def _as_batch(B, N, M, gamma, x_len, y_len):
    g = torch.as_tensor(gamma, dtype=torch.float32).expand(B).contiguous()
    xl = torch.full((B,), N, dtype=torch.int32) if x_len is None else torch.as_tensor(x_len, dtype=torch.int32)
    yl = torch.full((B,), M, dtype=torch.int32) if y_len is None else torch.as_tensor(y_len, dtype=torch.int32)
    return g, xl, yl


def run_triton(C, gamma, x_len=None, y_len=None, bandwidth=-1, block=None):
    """The launchers on TRITON_DEVICE; (values, state R, E) back on the CPU."""
    B, N, M = C.shape
    C, g, xl, yl = (t.to(TRITON_DEVICE) for t in (C, *_as_batch(B, N, M, gamma, x_len, y_len)))
    v, R = soft_dtw_forward(C, g, xl, yl, bandwidth, block=block)
    E = soft_dtw_backward(C, R, g, xl, yl, bandwidth, block=block)
    assert E.device.type == TRITON_DEVICE.type
    return v.cpu(), R.cpu(), E.cpu()


def run_reference(C, gamma, x_len=None, y_len=None, bandwidth=-1):
    B, N, M = C.shape
    g, xl, yl = _as_batch(B, N, M, gamma, x_len, y_len)
    kw = dict(bandwidth=None if bandwidth < 0 else bandwidth, x_lengths=xl.tolist(), y_lengths=yl.tolist())
    return ref.soft_dtw_cost(C.double(), g.double(), **kw), ref.soft_dtw_alignment_cost(C.double(), g.double(), **kw)


def active_mask(B, N, M, x_len, y_len, bandwidth):
    """Cells each pair's DP visits (its block, inside the band)."""
    _, xl, yl = _as_batch(B, N, M, 1.0, x_len, y_len)
    w = None if bandwidth < 0 else bandwidth
    return torch.stack([ref.band_mask(int(xl[b]), int(yl[b]), w, N, M) for b in range(B)])


def check(C, gamma, x_len=None, y_len=None, bandwidth=-1, block=None, rtol=1e-5, e_atol=1e-5):
    """Values and E against the reference; E exactly 0 off each pair's block and band."""
    B, N, M = C.shape
    v, R, E = run_triton(C, gamma, x_len, y_len, bandwidth, block)
    rv, rE = run_reference(C, gamma, x_len, y_len, bandwidth)
    assert v.dtype == torch.float32 and v.shape == (B,)
    assert E.dtype == torch.float32 and E.shape == (B, N, M)
    assert not torch.isnan(v).any() and torch.isfinite(E).all()
    torch.testing.assert_close(v.double(), rv, rtol=rtol, atol=rtol)
    torch.testing.assert_close(E.double(), rE, rtol=rtol, atol=e_atol)
    assert (E[~active_mask(B, N, M, x_len, y_len, bandwidth)] == 0).all()
    return v, R, E


def cost(gen, B, N, M, scale=1.0):
    return (torch.rand(B, N, M, generator=gen) * scale).contiguous()


@pytest.mark.parametrize("gamma,e_atol", [(1.0, 1e-5), (0.1, 1e-5), (0.01, 1e-4)])
def test_equal_lengths(gen, gamma, e_atol):
    check(cost(gen, 2, 6, 6), gamma, e_atol=e_atol)


@pytest.mark.parametrize("N,M", [(5, 9), (9, 4), (1, 7), (6, 1), (1, 1)])
def test_unequal_lengths(gen, N, M):
    check(cost(gen, 2, N, M), 0.5)


def test_ragged_batch_per_pair_gamma_matches_each_pair_alone(gen):
    C = cost(gen, 4, 7, 8)
    gamma = torch.tensor([1.0, 0.3, 0.05, 2.0])
    xl, yl = [7, 1, 4, 6], [8, 5, 1, 3]
    v, _, E = check(C, gamma, xl, yl, e_atol=2e-5)
    for b in range(4):
        n, m = xl[b], yl[b]
        vb, _, Eb = run_triton(C[b:b + 1, :n, :m].contiguous(), gamma[b:b + 1])
        torch.testing.assert_close(v[b:b + 1], vb, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(E[b:b + 1, :n, :m], Eb, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("w", [0, 1, 3])
def test_band_equal_lengths_uses_banded_storage(gen, w):
    B, N = 2, 9
    _, R, _ = check(cost(gen, B, N, N), 0.2, bandwidth=w)
    # a band meets each anti-diagonal in at most w+1 cells: the state holds two weights
    # for each of (N+M-1)*(w+1) slots per pair
    assert R.shape == (B, 2 * (2 * N - 1) * (w + 1))
    assert R.numel() < 2 * B * N * N


def test_band_too_wide_to_save_memory_uses_packed_storage(gen):
    w, W, banded, S = soft_dtw_layout(6, 6, 4)
    assert (w, W, banded, S) == (4, 5, False, 2 * 36)
    _, R, _ = check(cost(gen, 2, 6, 6), 0.5, bandwidth=4)
    assert R.shape == (2, 2 * 36)
    assert soft_dtw_layout(6, 6, 5)[:3] == (-1, 6, False)  # w >= max(n,m)-1 excludes no cell


@pytest.mark.parametrize("N,M", [(6, 11), (10, 4)])
def test_band_unequal_lengths_follows_the_diagonal(gen, N, M):
    w = ref.min_bandwidth(N, M)
    for bw in (w, w + 1):
        v, _, _ = check(cost(gen, 2, N, M), 0.3, bandwidth=bw)
        assert torch.isfinite(v).all()  # the scaled band keeps the end cell reachable


def test_band_with_ragged_lengths(gen):
    xl, yl = [8, 5, 3], [6, 8, 2]
    w = max(ref.min_bandwidth(n, m) for n, m in zip(xl, yl))
    check(cost(gen, 3, 8, 8), torch.tensor([0.5, 0.1, 1.0]), xl, yl, bandwidth=w, e_atol=2e-5)


def test_diagonals_longer_than_block_are_chunked(gen):
    # min(N, M) = 33 > 2 * BLOCK: the long diagonals take three chunks
    check(cost(gen, 1, 33, 35), 0.5, block=16, e_atol=2e-5)


def test_banded_diagonals_longer_than_block_are_chunked(gen):
    N, w = 34, 16  # W = 17 slots per diagonal > BLOCK = 16, and (2N-1)*17 < N*N: banded storage
    assert soft_dtw_layout(N, N, w)[2]
    check(cost(gen, 1, N, N), 0.5, bandwidth=w, block=16, e_atol=2e-5)


def test_block_choice_does_not_change_results(gen):
    C = cost(gen, 2, 20, 18)
    v16, _, E16 = run_triton(C, 0.3, [20, 13], [18, 9], block=16)
    v32, _, E32 = run_triton(C, 0.3, [20, 13], [18, 9], block=32)
    torch.testing.assert_close(v16, v32, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(E16, E32, rtol=1e-6, atol=1e-6)


def test_small_gamma_stays_finite(gen):
    C = cost(gen, 2, 10, 12, scale=4.0)
    v, _, E = run_triton(C, 1e-3)
    assert torch.isfinite(v).all() and torch.isfinite(E).all()
    rv, rE = run_reference(C, 1e-3)
    torch.testing.assert_close(v.double(), rv, rtol=1e-5, atol=1e-5)
    # the backward reuses the forward's soft-min weights: rebuilt from float32 R as
    # e^{ΔR/γ}, R's rounding (≈1e-6 absolute here) was amplified by 1/γ (errors ≈ 1e-3)
    torch.testing.assert_close(E.double(), rE, rtol=0, atol=1e-5)


@pytest.mark.parametrize("gamma,atol", [(0.01, 2e-5), (0.1, 1e-5)])
def test_alignment_accuracy_at_small_gamma(gen, gamma, atol):
    # 40 x 40 with costs in [0, 1): R grows to ≈ 10, so ulp(R)/γ would be 1e-4 at γ = 0.01
    # for weights rebuilt from R (measured 1.4e-4 / 2.1e-5 for E, against 6.5e-6 / 3.7e-6)
    C = torch.rand(2, 40, 40, generator=gen, dtype=torch.float64)
    v, _, E = run_triton(C.float(), gamma)
    rv, rE = run_reference(C, gamma)
    torch.testing.assert_close(v.double(), rv, rtol=V_RTOL, atol=0)
    torch.testing.assert_close(E.double(), rE, rtol=0, atol=atol)


def test_band_below_minimum_gives_inf_value_and_no_nan(gen):
    # w = 0 with n != m leaves only cells exactly on the line: the end is unreachable
    N, M = 4, 10
    assert not ref.reachable(N, M, 0)
    C = cost(gen, 1, N, M)
    v, _, E = run_triton(C, 0.5, bandwidth=0)
    rv, rE = run_reference(C, 0.5, bandwidth=0)
    assert torch.isinf(v).all() and torch.isinf(rv).all()
    assert torch.isfinite(E).all()
    torch.testing.assert_close(E.double(), rE, rtol=0, atol=0)


def test_inf_cost_wall_gives_inf_value_and_no_nan(gen):
    C = cost(gen, 1, 6, 6)
    C[0, 3, :] = float("inf")  # every monotone path crosses row 3
    v, _, E = run_triton(C, 0.5)
    rv, rE = run_reference(C, 0.5)
    assert torch.isinf(v).all() and torch.isinf(rv).all()
    assert not torch.isnan(E).any()
    torch.testing.assert_close(E.double(), rE, rtol=0, atol=0)


def test_inf_cost_region_with_a_way_around(gen):
    C = cost(gen, 2, 7, 7)
    C[:, 2:5, 0:5] = float("inf")  # all paths through this region are +inf, the rest are not
    v, _, E = check(C, 0.3)
    assert torch.isfinite(v).all()
    assert (E[:, 2:5, 0:5] == 0).all()


def test_alignment_is_a_visit_probability(gen):
    # without a band every path starts at (0,0) and ends at (n-1,m-1) and visits a cell at
    # most once, so E (the expected visits) is 1 at both ends and lies in [0, 1]
    _, _, E = run_triton(cost(gen, 2, 8, 5), 0.4)
    torch.testing.assert_close(E[:, 0, 0], torch.ones(2), rtol=0, atol=1e-5)
    assert (E[:, -1, -1] == 1).all()
    assert (E >= 0).all() and (E <= 1 + 1e-5).all()


def test_out_of_range_lengths_are_clamped_inside_the_pair(gen):
    # the ops layer rejects such lengths; the kernel still never touches another pair's slice
    C = cost(gen, 3, 5, 4)
    v, _, E = run_triton(C, 0.5, [0, 5 + 3, 5], [4, 4, 4 + 9])
    rv, rE = run_reference(C, 0.5)
    assert torch.isinf(v[0]) and (E[0] == 0).all()
    torch.testing.assert_close(v[1:].double(), rv[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(E[1:].double(), rE[1:], rtol=1e-5, atol=1e-5)


def test_backward_rejects_r_of_another_layout(gen):
    C, g, xl, yl = (t.to(TRITON_DEVICE) for t in (cost(gen, 1, 9, 9), *_as_batch(1, 9, 9, 0.5, None, None)))
    _, R = soft_dtw_forward(C, g, xl, yl, -1)
    with pytest.raises(ValueError, match="state must be"):
        soft_dtw_backward(C, R, g, xl, yl, 1)
    with pytest.raises(ValueError, match="block"):
        soft_dtw_forward(C, g, xl, yl, -1, block=24)
    with pytest.raises(ValueError, match="gamma"):
        soft_dtw_forward(C, g.repeat(2), xl, yl, -1)


def test_gamma_derivative_identity(gen):
    # d value / d gamma = (value - <E, C>) / gamma: check E through a finite difference in gamma
    C = cost(gen, 1, 6, 7)
    g = 0.3
    v, _, E = run_triton(C, g)
    h = 1e-2
    vp = ref.soft_dtw_cost(C.double(), g + h)
    vm = ref.soft_dtw_cost(C.double(), g - h)
    fd = (vp - vm) / (2 * h)
    analytic = (v.double() - (E.double() * C.double()).sum((1, 2))) / g
    torch.testing.assert_close(analytic, fd, rtol=1e-3, atol=1e-3)


@given(
    B=st.integers(1, 3), N=st.integers(1, 7), M=st.integers(1, 7),
    data=st.data(), gamma=st.floats(0.05, 2.0), band=st.sampled_from([None, 0, 1, 2, 5]),
    block=st.sampled_from([16, 32]),
)
def test_hypothesis_against_reference(B, N, M, data, gamma, band, block):
    xl = [data.draw(st.integers(1, N)) for _ in range(B)]
    yl = [data.draw(st.integers(1, M)) for _ in range(B)]
    if band is None:
        w = -1
    else:  # a band never narrower than any pair's minimum (what the ops layer enforces)
        w = max([band] + [ref.min_bandwidth(n, m) for n, m in zip(xl, yl)])
    C = torch.rand(B, N, M, generator=torch.Generator().manual_seed(N * 100 + M))
    check(C, gamma, xl, yl, bandwidth=w, block=block, e_atol=2e-5)


def test_compiled_kernels_keep_the_diagonal_barrier():
    # The interpreter runs a program's ops in order, so it cannot miss a barrier; on the GPU
    # a diagonal must not be read before every warp stored it. Check the compiled PTX: a
    # bar.sync per diagonal (the backward has one more, after seeding E[n-1, m-1]) and no
    # ld.global.nc, whose non-coherent path need not see the CTA's own stores.
    seen = compiled_barriers("soft_dtw:W=64")
    assert seen["_soft_dtw_fwd_kernel"][0] >= 1 and seen["_soft_dtw_bwd_kernel"][0] >= 2, seen
    assert all(nc == 0 for _, nc in seen.values()), seen
