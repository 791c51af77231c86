"""vtalign.compat.softdtw.SoftDTW against a plain float64 re-implementation of
pytorch-softdtw-cuda's CPU path (its pruning rule, its normalisation)."""
import math

import pytest
import torch

from vtalign.compat.softdtw import SoftDTW


def upstream_value(D, gamma, bandwidth):
    """R recursion of pytorch-softdtw-cuda's compute_softdtw, with autograd for E."""
    B, N, M = D.shape
    bw = 0.0 if bandwidth is None else float(bandwidth)
    out = []
    for b in range(B):
        R = [[torch.tensor(math.inf, dtype=D.dtype)] * (M + 1) for _ in range(N + 1)]
        R[0][0] = torch.tensor(0.0, dtype=D.dtype)
        for j in range(1, M + 1):
            for i in range(1, N + 1):
                if 0 < bw < abs(i - j):
                    continue
                r = torch.stack([-R[i - 1][j - 1], -R[i - 1][j], -R[i][j - 1]]) / gamma
                R[i][j] = D[b, i - 1, j - 1] - gamma * torch.logsumexp(r, 0)
        out.append(R[N][M])
    return torch.stack(out)


def sqeuclid(x, y):
    return ((x.unsqueeze(2) - y.unsqueeze(1)) ** 2).sum(3)


@pytest.mark.parametrize("gamma,bandwidth,normalize", [(1.0, None, False), (0.1, None, False), (0.5, 2, False),
                                                       (1.0, None, True), (0.3, 1.5, True)])
def test_values_and_gradients_match_upstream(gamma, bandwidth, normalize):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ours = SoftDTW(use_cuda=False, gamma=gamma, normalize=normalize, bandwidth=bandwidth)(X, Y)
    if normalize:
        v = upstream_value(sqeuclid(torch.cat([X, X, Y]), torch.cat([Y, X, Y])), gamma, bandwidth)
        want = v[:3] - 0.5 * (v[3:6] + v[6:])
    else:
        want = upstream_value(sqeuclid(X, Y), gamma, bandwidth)
    torch.testing.assert_close(ours, want, rtol=1e-8, atol=1e-10)
    gx, gy = torch.autograd.grad(ours.sum(), (X, Y))
    wx, wy = torch.autograd.grad(want.sum(), (X, Y))
    torch.testing.assert_close(gx, wx, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gy, wy, rtol=1e-8, atol=1e-10)


def test_custom_dist_func_and_unequal_lengths():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(2, 8, 3, generator=g, dtype=torch.float64)
    l1 = lambda x, y: (x.unsqueeze(2) - y.unsqueeze(1)).abs().sum(3)  # noqa: E731
    torch.testing.assert_close(SoftDTW(False, gamma=0.7, dist_func=l1)(X, Y), upstream_value(l1(X, Y), 0.7, None),
                               rtol=1e-8, atol=1e-10)
    # upstream's |i - j| <= w band makes N != M infinite; vtalign's follows the diagonal
    v = SoftDTW(False, gamma=0.7, bandwidth=2)(X, Y)
    assert torch.isfinite(v).all()
    assert math.isinf(float(upstream_value(sqeuclid(X, Y), 0.7, 2)[0]))
