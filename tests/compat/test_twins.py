"""vtalign.compat.twins against VT-TWINS' loss written out from its definition:
the smoothed cost, the (2n+1) x (2m+1) weak-alignment matrix, a plain soft-DTW
recursion per (text, video) pair, and the text→video InfoNCE."""
import math
from types import SimpleNamespace

import pytest
import torch

from vtalign.compat.twins import S2DTW, TDA


def softmin(vals, g):
    return -g * torch.logsumexp(torch.stack(vals) / -g, 0)


def s2dtw_plain(v, t, gamma=0.1, gs=0.1, tau=0.5):
    C = -(v @ t.T)
    n, m = C.shape
    inf = torch.tensor(math.inf, dtype=C.dtype)
    at = lambda i, j: C[i, j] if i >= 0 and j >= 0 else inf  # noqa: E731
    Cs = torch.empty_like(C)
    for i in range(n):
        for j in range(m):
            nb = [torch.zeros((), dtype=C.dtype)] * 3 if i == j == 0 else [at(i, j - 1), at(i - 1, j), at(i - 1, j - 1)]
            Cs[i, j] = C[i, j] + softmin(nb, gs)
    W = torch.full((2 * n + 1, 2 * m + 1), tau, dtype=C.dtype)
    W[1::2, 1::2] = Cs
    R = [[inf] * (2 * m + 2) for _ in range(2 * n + 2)]
    R[0][0] = torch.zeros((), dtype=C.dtype)
    for i in range(1, 2 * n + 2):
        for j in range(1, 2 * m + 2):
            R[i][j] = W[i - 1, j - 1] + softmin([R[i - 1][j - 1], R[i - 1][j], R[i][j - 1]], gamma)
    return R[-1][-1]


def test_loss_equals_definition():
    g = torch.Generator().manual_seed(0)
    video = torch.nn.functional.normalize(torch.randn(3, 4, 5, generator=g, dtype=torch.float64), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(3, 4, 5, generator=g, dtype=torch.float64), dim=-1)
    video.requires_grad_(True)
    loss = S2DTW(SimpleNamespace(num_clip=4))(video, text)
    b = video.shape[0]
    neg = torch.stack([torch.stack([-s2dtw_plain(video[j], text[i]) for j in range(b)]) for i in range(b)])
    pos = torch.stack([-s2dtw_plain(video[i], text[i]) for i in range(b)])
    want = torch.mean(torch.logsumexp(neg, 1) - pos)
    torch.testing.assert_close(loss, want, rtol=1e-8, atol=1e-10)
    (g1,) = torch.autograd.grad(loss, video)
    (g2,) = torch.autograd.grad(want, video)
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-8)


def test_tda_permutes_within_two_steps():
    torch.manual_seed(0)
    tda = TDA(SimpleNamespace(num_clip=6))
    v = torch.randn(4, 6, 8) * 0.05  # small embeddings: the softmin spreads mass over permutations
    pv, pt = tda(v, v.clone())
    assert pv.shape == v.shape
    for b in range(4):
        # every output clip is an input clip at most two positions away
        for i in range(6):
            src = [j for j in range(6) if torch.equal(pv[b, i], v[b, j])]
            assert src and abs(src[0] - i) <= 2
    with pytest.raises(ValueError, match="num_clip"):
        tda(torch.randn(2, 5, 8), torch.randn(2, 5, 8))
