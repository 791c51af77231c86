"""pytest-benchmark face of the kNN suite: `pytest benchmarks/test_bench_knn.py --benchmark-only`.

Not part of `make test` (tests/ is); `python -m benchmarks.run knn` writes the tables.
"""
import pytest
import torch

import vtalign
from benchmarks.bench_knn import once_per_layer
from vtalign.probe import layerwise_alignment

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def stacks():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1024, 13, 768, generator=g), torch.randn(1024, 13, 768, generator=g)


def test_layerwise_alignment_13x13(benchmark, stacks):
    benchmark(layerwise_alignment, *stacks, k=10)


def test_once_per_layer_torch_13x13(benchmark, stacks):
    benchmark.pedantic(once_per_layer, args=(*stacks, 10), rounds=2)


@pytest.mark.parametrize("n", [10000, 20000])
def test_cosine_knn(benchmark, n):
    x = torch.randn(n, 768, generator=torch.Generator().manual_seed(0))
    benchmark.pedantic(vtalign.cosine_knn, args=(x, 10), rounds=2)
