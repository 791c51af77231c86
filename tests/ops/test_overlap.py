"""knn_overlap and mutual_knn against the reference and the platonic-rep definition."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vtalign
from tests._device import device_for
from vtalign.ops._common import has_cpp
from vtalign.reference import knn as ref

BACKENDS = (["cpp"] if has_cpp() else []) + ["torch", "reference", "triton"]


def random_lists(L, N, k, n_ids, gen):
    """Distinct-index lists drawn from a small id range so overlaps are frequent."""
    return torch.stack([torch.stack([torch.randperm(n_ids, generator=gen)[:k] for _ in range(N)])
                        for _ in range(L)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("La,Lb,N,k,ids", [(2, 3, 17, 4, 9), (1, 1, 5, 1, 2), (3, 2, 11, 20, 30)])
def test_overlap_matches_reference(backend, La, Lb, N, k, ids, gen):
    a = random_lists(La, N, k, ids, gen)
    b = random_lists(Lb, N, k, ids, gen)
    want = ref.knn_overlap(a, b, reduce="none")
    # integer counts on every device: only the final division rounds
    dev = device_for(backend)
    per = vtalign.knn_overlap(a.to(dev), b.to(dev), reduce="none", backend=backend, n_keys=ids).cpu()
    assert per.shape == (La, Lb, N)
    torch.testing.assert_close(per.double(), want, atol=1e-7, rtol=0)
    mean = vtalign.knn_overlap(a.to(dev), b.to(dev), backend=backend, n_keys=ids).cpu()
    assert mean.dtype == torch.float64
    torch.testing.assert_close(mean, want.mean(-1), atol=1e-12, rtol=0)


def test_int32_lists_accepted(gen):
    a = random_lists(2, 10, 3, 8, gen)
    b = random_lists(2, 10, 3, 8, gen)
    torch.testing.assert_close(vtalign.knn_overlap(a.int(), b.int()), vtalign.knn_overlap(a, b))


def platonic_mutual_knn(feats_a, feats_b, topk):
    """docs/design.md §3.2 / platonic-rep: dense Gram, argsort, dense masks (float64)."""
    def nn(f):
        f = torch.nn.functional.normalize(f.double(), dim=-1)
        return (f @ f.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
    n = feats_a.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    ma = torch.zeros(n, n, dtype=torch.float64)
    mb = torch.zeros(n, n, dtype=torch.float64)
    ma[rows, nn(feats_a)] = 1.0
    mb[rows, nn(feats_b)] = 1.0
    return float(((ma * mb).sum(1) / topk).mean())


@pytest.mark.parametrize("backend", BACKENDS[:-1])
def test_mutual_knn_equals_definition(backend, gen):
    z = torch.randn(120, 6, generator=gen)
    a = torch.tanh(z @ torch.randn(6, 20, generator=gen)) + 0.3 * torch.randn(120, 20, generator=gen)
    b = torch.relu(z @ torch.randn(6, 12, generator=gen)) + 0.3 * torch.randn(120, 12, generator=gen)
    for k in (1, 5, 10):
        got = vtalign.mutual_knn(a, b, k=k, backend=backend)
        assert got == pytest.approx(platonic_mutual_knn(a, b, k), abs=1e-12)
        assert got > 3 * k / 119  # shared latent: well above chance


def test_mutual_knn_chance_level(gen):
    n, k = 400, 10
    vals = [vtalign.mutual_knn(torch.randn(n, 16, generator=gen), torch.randn(n, 16, generator=gen), k=k)
            for _ in range(5)]
    mean = sum(vals) / len(vals)
    assert abs(mean - k / (n - 1)) < 0.01


def test_mutual_knn_identical_is_one(gen):
    x = torch.randn(50, 8, generator=gen)
    assert vtalign.mutual_knn(x, 2.5 * x, k=5) == 1.0


@given(la=st.integers(1, 3), lb=st.integers(1, 3), n=st.integers(1, 20), k=st.integers(1, 18),
       seed=st.integers(0, 2**31 - 1))
def test_property_overlap_backends_agree(la, lb, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    ids = k + 3
    a = random_lists(la, n, k, ids, g)
    b = random_lists(lb, n, k, ids, g)
    want = ref.knn_overlap(a, b, reduce="none")
    for be in BACKENDS[:-2]:
        got = vtalign.knn_overlap(a, b, reduce="none", backend=be, n_keys=ids)
        torch.testing.assert_close(got.double(), want, atol=1e-7, rtol=0)
        assert bool(((got >= 0) & (got <= 1)).all())


@pytest.mark.parametrize("bad,err,match", [
    (lambda: vtalign.knn_overlap(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3)), TypeError, "int32 or int64"),
    (lambda: vtalign.knn_overlap(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]], [[1, 0]], [[0, 2]]])[:, :, :1],
                                 n_keys=3), ValueError, "agree on"),
    (lambda: vtalign.knn_overlap(torch.tensor([[0, 9], [1, 0]]), torch.tensor([[1, 0], [0, 1]])), ValueError,
     "index >= 2"),
    (lambda: vtalign.knn_overlap(torch.tensor([[0, 9], [1, 0]]), torch.tensor([[1, 0], [0, 1]]), n_keys=5),
     ValueError, "n_keys"),
    (lambda: vtalign.knn_overlap(torch.tensor([[0, 1]]), torch.tensor([[1, 0]]), n_keys=2.5), TypeError, "n_keys"),
    (lambda: vtalign.knn_overlap(torch.tensor([[[0, 0]]]), torch.tensor([[[0, 1]]])), ValueError, "repeated"),
    (lambda: vtalign.knn_overlap(torch.tensor([[[0, -1]]]), torch.tensor([[[0, 1]]])), ValueError, "negative"),
    (lambda: vtalign.knn_overlap(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]), reduce="sum"),
     ValueError, "reduce"),
    (lambda: vtalign.mutual_knn(torch.randn(10, 3), torch.randn(11, 3)), ValueError, "same number of samples"),
    (lambda: vtalign.mutual_knn(torch.randn(10, 3), torch.randn(10, 3), k=10), ValueError, "k must be in"),
])
def test_bad_input(bad, err, match):
    with pytest.raises(err, match=match):
        bad()


def test_overlap_opcheck(gen):
    import importlib
    mod = importlib.import_module("vtalign.ops.overlap")
    a = random_lists(2, 6, 3, 7, gen)
    b = random_lists(3, 6, 3, 7, gen)
    for be in BACKENDS[:-1]:
        for reduce in (True, False):
            torch.library.opcheck(mod._overlap_op, (a, b, reduce, be))
