"""cosine_knn / knn on every backend against the float64 reference (docs/design.md §3.1)."""
import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vtalign
from tests._device import device_for
from vtalign.ops._common import has_cpp
from vtalign.reference import knn as ref

knn_mod = importlib.import_module("vtalign.ops.knn")

CPU_BACKENDS = ["cpp", "torch", "reference"] if has_cpp() else ["torch", "reference"]


def assert_topk_valid(vals, idx, rv, ri, after, *, atol, sims=None):
    """`(vals, idx)` against the reference top-k `(rv, ri)`: values within `atol`, and
    indices equal where the reference is unambiguous, i.e. where a slot's value is more
    than 10·atol from both neighbours (`after`: the reference's (k+1)-th values, or None
    when there is none). Where float32 (or TF32 on a GPU) rounding could reorder
    near-ties, every returned neighbour must still carry its true float64 similarity:
    `sims` [..., M, N], when given, holds the reference similarity of every pair."""
    k = rv.shape[-1]
    assert vals.shape == rv.shape and idx.shape == ri.shape
    assert idx.dtype == torch.int64
    vals, idx = vals.cpu(), idx.cpu()
    torch.testing.assert_close(vals.double(), rv, atol=atol, rtol=0)
    padded = torch.cat([rv[..., :1] + 1, rv], -1)
    gap_ok = (padded[..., :k] - padded[..., 1:k + 1]).abs() > 10 * atol
    if after is not None:
        gap_ok &= (rv[..., k - 1:k] - after).abs() > 10 * atol
    assert torch.equal(idx[gap_ok], ri[gap_ok])
    if sims is not None:
        torch.testing.assert_close(sims.gather(-1, idx), rv, atol=atol, rtol=0)
    srt = idx.sort(-1).values
    assert not bool((srt[..., 1:] == srt[..., :-1]).any()), "a neighbour listed twice"


def assert_knn_valid(x, vals, idx, k, *, exclude_self=True, atol=1e-5):
    """A self-search of `x` [N, D] against the float64 reference (see assert_topk_valid)."""
    x = x.cpu()
    n_avail = x.shape[-2] - int(exclude_self)
    full_v, _ = ref.cosine_knn(x, min(k + 1, n_avail), exclude_self=exclude_self)
    rv, ri = ref.cosine_knn(x, k, exclude_self=exclude_self)
    xn = torch.nn.functional.normalize(x.double(), dim=-1)
    assert_topk_valid(vals, idx, rv, ri, full_v[..., k:k + 1] if n_avail > k else None, atol=atol,
                      sims=xn @ xn.transpose(-1, -2))
    if exclude_self:
        rows = torch.arange(x.shape[-2]).unsqueeze(-1)
        assert not bool((idx.cpu() == rows).any())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("L,N,D,k", [(1, 50, 8, 5), (3, 97, 16, 1), (2, 40, 1, 39), (1, 130, 33, 20)])
def test_matches_reference(backend, L, N, D, k, gen):
    x = torch.randn(L, N, D, generator=gen)
    # a 64x64-element workspace forces many tiles, ragged last tiles included
    vals, idx = vtalign.cosine_knn(x, k, backend=backend, max_workspace_bytes=64 * 64 * 4)
    for layer in range(L):
        assert_knn_valid(x[layer], vals[layer], idx[layer], k)


@pytest.mark.parametrize("L,N,D,k", [(2, 37, 5, 3), (1, 70, 20, 7), (1, 9, 1, 8)])
def test_triton_matches_reference(L, N, D, k, gen, triton_device):
    """On a GPU the float32 dots run as 3xTF32: cosines within ~1e-6 of float64 at these D,
    so the 1e-5 value tolerance holds there as in the interpreter (exact float32)."""
    x = torch.randn(L, N, D, generator=gen)
    vals, idx = vtalign.cosine_knn(x.to(triton_device), k, backend="triton")
    assert vals.dtype == torch.float32 and vals.device.type == triton_device.type
    for layer in range(L):
        assert_knn_valid(x[layer], vals[layer], idx[layer], k)


def test_triton_fp16(gen, triton_device):
    """fp16 unit rows carry a relative rounding of 2^-11 per entry, so a cosine of two of
    them is off by at most ~2·2^-11 ≈ 1e-3 (fp32 accumulation on the tensor cores)."""
    x = torch.randn(1, 40, 24, generator=gen)
    vals, idx = vtalign.cosine_knn(x.half().to(triton_device), 4, backend="triton")
    rv, _ = ref.cosine_knn(x.half().float(), 4)
    torch.testing.assert_close(vals.cpu().double(), rv, atol=2e-3, rtol=0)


def _tie_features():
    # entries in {0, ±1} with exactly four non-zeros: unit rows are ±0.5 and every
    # dot product is an exact multiple of 0.25, so duplicated rows tie exactly.
    base = torch.tensor([[1, 1, 1, 1, 0, 0], [1, -1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 1],
                         [1, 0, 0, 1, 1, 1], [-1, 1, 0, 1, 0, 1]], dtype=torch.float32)
    return torch.cat([base, base, base[:3], base * 3.0])  # scaled copies are ties too


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["triton"])
def test_ties_go_to_lower_index(backend):
    """Exact on a GPU too: ±0.5 entries are exact in TF32 (3xTF32's low parts are zero),
    so every dot is exact and the ties are real ties."""
    x = _tie_features()
    k = x.shape[0] - 1
    vals, idx = vtalign.cosine_knn(x.to(device_for(backend)), k, backend=backend, max_workspace_bytes=64 * 64 * 4)
    rv, ri = ref.cosine_knn(x, k)
    assert torch.equal(idx.cpu(), ri), backend
    torch.testing.assert_close(vals.cpu().double(), rv, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_include_self_and_2d_input(backend, gen):
    x = torch.randn(30, 6, generator=gen)
    vals, idx = vtalign.cosine_knn(x, 30, exclude_self=False, backend=backend)
    assert idx.shape == (30, 30)
    assert torch.equal(idx[:, 0], torch.arange(30))
    torch.testing.assert_close(vals[:, 0].double(), torch.ones(30, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["triton"])
def test_query_key_form(backend, gen):
    keys = torch.randn(2, 45, 12, generator=gen)
    q = keys[:, 10:25]
    dev = device_for(backend)
    v, i = vtalign.knn(q.to(dev), keys.to(dev), 4, self_shift=10, backend=backend)
    rv, ri = ref.knn(q, keys, 5, self_shift=10)
    qn, kn = (torch.nn.functional.normalize(t.double(), dim=-1) for t in (q, keys))
    # random data: indices exact only away from near-ties (3xTF32 on a GPU rounds differently)
    assert_topk_valid(v, i, rv[..., :4], ri[..., :4], rv[..., 4:], atol=1e-5, sims=qn @ kn.transpose(-1, -2))
    # a shard searching the full set finds the corresponding rows of the full search
    fv, fi = vtalign.cosine_knn(keys.to(dev), 4, backend=backend)
    assert_topk_valid(v, i, fv[:, 10:25].cpu().double(), fi[:, 10:25].cpu(), rv[..., 4:], atol=1e-5)


def test_float64_cpu_returns_float64(gen):
    x = torch.randn(25, 4, generator=gen, dtype=torch.float64)
    for be in CPU_BACKENDS:
        v, _ = vtalign.cosine_knn(x, 3, backend=be)
        assert v.dtype == torch.float64


def test_workspace_bounds_every_tile(monkeypatch, gen):
    """No N x N matrix: every similarity tile fits the workspace."""
    seen = []
    real_mm = torch.mm

    def spy(a, b, *args, **kw):
        seen.append(a.shape[0] * b.shape[1])
        return real_mm(a, b, *args, **kw)

    monkeypatch.setattr(torch, "mm", spy)
    x = torch.randn(1, 600, 8, generator=gen)
    budget = 128 * 128 * 4
    for be in CPU_BACKENDS[:-1]:
        seen.clear()
        if be == "torch":
            monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: spy(a, b))
        vtalign.cosine_knn(x, 5, backend=be, max_workspace_bytes=budget)
        assert seen and max(seen) * 4 <= budget, (be, max(seen))


def test_deterministic_across_threads(gen):
    x = torch.randn(2, 300, 16, generator=gen)
    be = CPU_BACKENDS[0]
    v1, i1 = vtalign.cosine_knn(x, 7, backend=be, max_workspace_bytes=100 * 100 * 4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        v2, i2 = vtalign.cosine_knn(x, 7, backend=be, max_workspace_bytes=100 * 100 * 4)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(i1, i2)
    v3, i3 = vtalign.cosine_knn(x, 7, backend=be, max_workspace_bytes=100 * 100 * 4)
    assert torch.equal(i1, i3) and torch.equal(v1, v3)


@given(n=st.integers(2, 70), d=st.integers(1, 20), layers=st.integers(1, 3), data=st.data(),
       ws=st.sampled_from([64 * 64 * 4, 1 << 20]), seed=st.integers(0, 2**31 - 1))
def test_property_any_shape(n, d, layers, data, ws, seed):
    k = data.draw(st.integers(1, n - 1))
    x = torch.randn(layers, n, d, generator=torch.Generator().manual_seed(seed))
    for be in CPU_BACKENDS[:-1]:
        vals, idx = vtalign.cosine_knn(x, k, backend=be, max_workspace_bytes=ws)
        for layer in range(layers):
            assert_knn_valid(x[layer], vals[layer], idx[layer], k)
            # sorted best-first
            assert bool((vals[layer][:, :-1] >= vals[layer][:, 1:]).all())


@pytest.mark.parametrize("bad,err,match", [
    (lambda: vtalign.cosine_knn(torch.randn(10, 3), 10), ValueError, "k must be in"),
    (lambda: vtalign.cosine_knn(torch.randn(10, 3), 0), ValueError, "k must be in"),
    (lambda: vtalign.cosine_knn(torch.randn(10, 3), 2.0), TypeError, "k must be an int"),
    (lambda: vtalign.cosine_knn(torch.randint(0, 5, (10, 3)), 2), TypeError, "floating"),
    (lambda: vtalign.cosine_knn(torch.randn(2, 2, 10, 3), 2), ValueError, "2-D or 3-D"),
    (lambda: vtalign.cosine_knn(torch.randn(0, 3), 2), ValueError, "empty"),
    (lambda: vtalign.cosine_knn([[1.0]], 1), TypeError, "torch.Tensor"),
    (lambda: vtalign.cosine_knn(torch.randn(10, 3), 2, backend="cuda"), ValueError, "backend"),
    (lambda: vtalign.knn(torch.randn(4, 3), torch.randn(10, 5), 2), ValueError, "feature size"),
    (lambda: vtalign.knn(torch.randn(4, 3), torch.randn(3, 3), 4), ValueError, "k must be in"),
    (lambda: vtalign.knn(torch.randn(4, 3), torch.randn(6, 3), 2, self_shift=3), ValueError, "self_shift"),
])
def test_bad_input(bad, err, match):
    with pytest.raises(err, match=match):
        bad()


def test_nan_names_layer_and_row():
    x = torch.randn(3, 20, 4)
    x[2, 7, 1] = float("nan")
    with pytest.raises(ValueError, match="layer 2, row 7"):
        vtalign.cosine_knn(x, 3)
    x[2, 7, 1] = float("inf")
    with pytest.raises(ValueError, match="Inf"):
        vtalign.cosine_knn(x, 3)


def test_triton_on_cpu_needs_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA tensors"):
        vtalign.cosine_knn(torch.randn(10, 3), 2, backend="triton")


def test_triton_rejects_float64():
    with pytest.raises(TypeError, match="float64"):
        vtalign.cosine_knn(torch.randn(10, 3, dtype=torch.float64), 2, backend="triton")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend, gen):
    x = knn_mod.unit_rows(torch.randn(2, 20, 5, generator=gen))
    torch.library.opcheck(knn_mod._knn_op, (x, x, 3, 0, True, backend, 1 << 20, "tf32x3"))
    torch.library.opcheck(knn_mod._knn_op, (x[:, :7], x, 3, -1, False, backend, 1 << 20, "tf32x3"))


def test_env_backend(monkeypatch, gen):
    x = torch.randn(20, 4, generator=gen)
    monkeypatch.setenv("VTALIGN_BACKEND", "reference")
    v, _ = vtalign.cosine_knn(x, 2)
    assert v.dtype == torch.float64  # the reference computes in float64
