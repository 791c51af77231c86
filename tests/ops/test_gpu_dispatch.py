"""Backend choice for CUDA inputs, checked without a GPU: "auto" takes a path that can
run the input, an explicit backend that cannot raises before anything launches, and
the list metrics take any backend (their walk runs on the CPU)."""
import pytest
import torch

import vtalign
from vtalign.ops import _common
from vtalign.ops.knn import TRITON_MAX_K
from vtalign.ops.knn_lists import list_scores


class FakeCuda(torch.Tensor):
    """A CPU tensor that reports itself on CUDA, for the dispatch decision alone."""

    @property
    def is_cuda(self):
        return True


def _fake(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype).as_subclass(FakeCuda)


def test_auto_on_cuda_takes_torch_where_triton_cannot(monkeypatch):
    monkeypatch.delenv("VTALIGN_BACKEND", raising=False)
    x = _fake(4, 3, dtype=torch.float64)
    assert _common.resolve_backend("auto", [x], triton_unsupported=_common.triton_dtype_gap(x)) == "torch"
    y = _fake(4, 3)
    assert _common.resolve_backend("auto", [y], triton_unsupported=_common.triton_dtype_gap(y)) == "triton"


def test_explicit_triton_refuses_what_it_cannot_run():
    x = _fake(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64.*backend='torch'"):
        _common.resolve_backend("triton", [x], triton_unsupported=_common.triton_dtype_gap(x))


def test_env_triton_counts_as_explicit(monkeypatch):
    monkeypatch.setenv("VTALIGN_BACKEND", "triton")
    x = _fake(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        _common.resolve_backend("auto", [x], triton_unsupported=_common.triton_dtype_gap(x))


def test_knn_k_above_the_triton_limit_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(TRITON_MAX_K + 10, 8)
    with pytest.raises(ValueError, match=f"k <= {TRITON_MAX_K}"):
        vtalign.cosine_knn(x, TRITON_MAX_K + 1, backend="triton")


def test_triton_k_limit_matches_the_kernel():
    from vtalign.kernels.knn import MAX_K

    assert TRITON_MAX_K == MAX_K


def test_soft_dtw_triton_refuses_float64_instead_of_rounding(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        vtalign.soft_dtw(x, x, 1.0, backend="triton")


@pytest.mark.parametrize("metric", ["cycle_knn", "lcs_knn", "edit_distance_knn"])
def test_list_metrics_take_backend_triton(metric, gen):
    idx = vtalign.cosine_knn(torch.randn(2, 30, 8, generator=gen), 4)[1]
    other = vtalign.cosine_knn(torch.randn(3, 30, 8, generator=gen), 4)[1]
    want = list_scores(metric, idx, other, backend="cpp")
    assert torch.equal(list_scores(metric, idx, other, backend="triton"), want)
    torch.testing.assert_close(list_scores(metric, idx, other, backend="torch"), want, rtol=0, atol=1e-12)


def test_cost_and_gram_gemms_run_at_full_precision_and_restore():
    import importlib

    sd = importlib.import_module("vtalign.ops.soft_dtw.costs")

    seen = []
    real_bmm = torch.bmm

    def spy(*a, **kw):
        seen.append(torch.get_float32_matmul_precision())
        return real_bmm(*a, **kw)

    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # what a training script may set for speed
    try:
        torch.bmm = spy
        x = torch.randn(2, 5, 3, requires_grad=True)
        c = sd.GemmCost.apply(x, torch.randn(2, 4, 3), True, 0.0, False)
        c.sum().backward()
    finally:
        torch.bmm = real_bmm
        after = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(prev)
    assert seen and set(seen) == {"highest"}
    assert after == "medium"
