"""vtalign.compat.platonic against a plain float64 re-implementation of
platonic-rep's definitions (metrics.py / measure_alignment.py)."""
import numpy as np
import pytest
import torch

from vtalign.compat.platonic import AlignmentMetrics, compute_score, prepare_features, remove_outliers


# ------------------------------------------------ upstream definitions, plainly
def nn_lists(f, k):
    s = (f @ f.T).fill_diagonal_(-1e8)
    return torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]


def up_mutual(a, b, k):
    n = a.shape[0]
    ma, mb = torch.zeros(n, n, dtype=a.dtype), torch.zeros(n, n, dtype=a.dtype)
    r = torch.arange(n)[:, None]
    ma[r, nn_lists(a, k)] = 1
    mb[r, nn_lists(b, k)] = 1
    return float(((ma * mb).sum(1) / k).mean())


def up_cycle(a, b, k):
    ka, kb = nn_lists(a, k), nn_lists(b, k)
    n = a.shape[0]
    hit = (ka[kb] == torch.arange(n).view(-1, 1, 1)).view(n, -1).any(1)
    return float(hit.double().mean())


def lcs(x, y):
    dp = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            dp[i][j] = dp[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(dp[i - 1][j], dp[i][j - 1])
    return dp[-1][-1]


def lev(x, y):
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] != y[j - 1]))
        prev = cur
    return prev[-1]


def hsic(K, L, unbiased):
    m = K.shape[0]
    if not unbiased:
        H = torch.eye(m, dtype=K.dtype) - 1 / m
        return torch.trace(K @ H @ L @ H)
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    hsic = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)
    return hsic / (m * (m - 3))


def up_cka(a, b, unbiased):
    K, L = a @ a.T, b @ b.T
    return float(hsic(K, L, unbiased) / (torch.sqrt(hsic(K, K, unbiased) * hsic(L, L, unbiased)) + 1e-6))


def up_cknna(a, b, k):
    n = a.shape[0]
    K, L = a @ a.T, b @ b.T

    def sim(K, L):
        mk = torch.zeros(n, n, dtype=K.dtype).scatter_(1, nn_lists_from(K, k), 1)
        ml = torch.zeros(n, n, dtype=K.dtype).scatter_(1, nn_lists_from(L, k), 1)
        m = mk * ml
        return hsic(m * K, m * L, True)
    return float(sim(K, L)) / float(torch.sqrt(sim(K, K) * sim(L, L)) + 1e-6)


def nn_lists_from(K, k):
    return torch.sort(K.clone().fill_diagonal_(float("-inf")), dim=1, descending=True, stable=True).indices[:, :k]


def up_svcca(a, b, d):
    def basis(x):
        x = x - x.mean(0)
        x = x / (x.std(0) + 1e-8)
        return np.linalg.svd(x.numpy(), full_matrices=False)[0][:, :d]
    u1, u2 = basis(a), basis(b)
    # CCA by whitening the covariances (a different route to the same correlations)
    c11, c22, c12 = u1.T @ u1, u2.T @ u2, u1.T @ u2
    w1 = np.linalg.inv(np.linalg.cholesky(c11))
    w2 = np.linalg.inv(np.linalg.cholesky(c22))
    return float(np.linalg.svd(w1 @ c12 @ w2.T, compute_uv=False).mean())


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(80, 6, generator=g, dtype=torch.float64)
    a = torch.nn.functional.normalize(torch.tanh(z @ torch.randn(6, 20, generator=g, dtype=torch.float64))
                                      + 0.3 * torch.randn(80, 20, generator=g, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(z @ torch.randn(6, 12, generator=g, dtype=torch.float64)
                                      + 0.3 * torch.randn(80, 12, generator=g, dtype=torch.float64), dim=-1)
    return a, b


def test_knn_metrics(pair):
    a, b = pair
    k = 7
    assert AlignmentMetrics.mutual_knn(a, b, k) == pytest.approx(up_mutual(a, b, k), rel=1e-8)
    assert AlignmentMetrics.measure("cycle_knn", a, b, topk=k) == pytest.approx(up_cycle(a, b, k), rel=1e-8)
    la, lb = nn_lists(a, k).tolist(), nn_lists(b, k).tolist()
    want_lcs = np.mean([lcs(x, y) for x, y in zip(la, lb)])
    got = AlignmentMetrics.lcs_knn(a, b, k)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert float(got) == pytest.approx(want_lcs, rel=1e-6)
    got = AlignmentMetrics.edit_distance_knn(a, b, k)
    assert isinstance(got, torch.Tensor)
    assert float(got) == pytest.approx(1 - np.mean([lev(x, y) for x, y in zip(la, lb)]) / k, rel=1e-8)


def test_gram_metrics(pair):
    a, b = pair
    assert AlignmentMetrics.cka(a, b) == pytest.approx(up_cka(a, b, False), rel=1e-8)
    assert AlignmentMetrics.unbiased_cka(a, b) == pytest.approx(up_cka(a, b, True), rel=1e-8)
    assert AlignmentMetrics.cknna(a, b, topk=9) == pytest.approx(up_cknna(a, b, 9), rel=1e-8)
    assert AlignmentMetrics.svcca(a, b, cca_dim=5) == pytest.approx(up_svcca(a, b, 5), rel=1e-8)
    rbf = AlignmentMetrics.cka(a, b, kernel_metric="rbf", rbf_sigma=0.7)
    assert 0 < rbf <= 1
    with pytest.raises(ValueError, match="CKNNA requires"):
        AlignmentMetrics.cknna(a, b, topk=1)
    with pytest.raises(ValueError, match="Unrecognized metric"):
        AlignmentMetrics.measure("nope", a, b)


def test_compute_score_equals_upstream_loop():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(60, 5, generator=g, dtype=torch.float64)
    x = torch.stack([z @ torch.randn(5, 8, generator=g, dtype=torch.float64) * s
                     + n * torch.randn(60, 8, generator=g, dtype=torch.float64)
                     for s, n in ((1, 2.0), (1, 0.2), (1, 1.0))], 1)
    y = torch.stack([z @ torch.randn(5, 6, generator=g, dtype=torch.float64) + n * torch.randn(60, 6, generator=g,
                                                                                               dtype=torch.float64)
                     for n in (1.5, 0.1)], 1)
    for metric, fn in (("mutual_knn", lambda a, b: up_mutual(a, b, 10)), ("cka", lambda a, b: up_cka(a, b, False))):
        best, idx = 0, None
        for i in range(x.shape[1]):
            for j in range(y.shape[1]):
                s = fn(torch.nn.functional.normalize(x[:, i], dim=-1), torch.nn.functional.normalize(y[:, j], dim=-1))
                if s > best:
                    best, idx = s, (i, j)
        got, got_idx = compute_score(x, y, metric=metric, topk=10)
        assert got_idx == idx == (1, 1)
        assert got == pytest.approx(best, rel=1e-8)
    lists = compute_score([x[:, 0], x[:, 1]], [y[:, 1]], metric="mutual_knn", topk=10)
    assert lists[1] == (1, 0)


def test_compute_score_no_positive_score():
    x = torch.zeros(20, 2, 4, dtype=torch.float64)
    x[:, :, 0] = 1.0  # identical rows: every neighbour list ties; cka is 0 (no variance)
    assert compute_score(x, x, metric="cka") == (0, None)


def test_outliers_and_prepare():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(50, 3, 16, generator=g, dtype=torch.float64)
    q_exact = f.view(-1).abs().sort().values[int(0.95 * f.numel())]
    torch.testing.assert_close(remove_outliers(f, 0.95, exact=True), f.clamp(-q_exact, q_exact))
    q_appr = torch.quantile(f.abs().flatten(start_dim=1), 0.95, dim=1).mean()
    torch.testing.assert_close(remove_outliers(f, 0.95), f.clamp(-q_appr, q_appr))
    assert remove_outliers(f, 1) is f
    p = prepare_features([f[:, 0], f[:, 1]])
    assert isinstance(p, list) and p[0].dtype == torch.float32
    with pytest.raises(ValueError, match="Unsupported input type"):
        prepare_features("x")
