"""Sharded kNN over 2 gloo processes equals the single-process search."""
import os
import tempfile

import pytest
import torch

import vtalign
from tests._gloo import run_ranks
from vtalign._distributed_knn import knn as sharded_knn


def _worker(rank, world, out_dir, sizes, k, layers):
    os.environ.pop("TRITON_INTERPRET", None)
    x = torch.randn(layers, sum(sizes), 12, generator=torch.Generator().manual_seed(5))
    lo = sum(sizes[:rank])
    v, i = sharded_knn(x[:, lo:lo + sizes[rank]], k)
    torch.save({"v": v, "i": i}, os.path.join(out_dir, f"{rank}.pt"))


@pytest.mark.parametrize("sizes,k", [((40, 40), 5), ((13, 50), 20), ((3, 60), 9)])
def test_two_gloo_ranks_equal_single_process(sizes, k):
    layers = 2
    with tempfile.TemporaryDirectory() as tmp:
        run_ranks(_worker, 2, tmp, list(sizes), k, layers)
        parts = [torch.load(os.path.join(tmp, f"{r}.pt"), weights_only=True) for r in range(2)]
    x = torch.randn(layers, sum(sizes), 12, generator=torch.Generator().manual_seed(5))
    fv, fi = vtalign.cosine_knn(x, k)
    assert torch.equal(torch.cat([p["i"] for p in parts], 1), fi)
    torch.testing.assert_close(torch.cat([p["v"] for p in parts], 1), fv, atol=1e-6, rtol=0)


def test_needs_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        sharded_knn(torch.randn(10, 3), 2)


def test_nccl_needs_cuda_shards(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")

    def no_collective(*a, **kw):
        raise AssertionError("a collective ran before the device check")

    monkeypatch.setattr(dist, "all_gather", no_collective)
    with pytest.raises(ValueError, match="nccl.*CUDA"):
        sharded_knn(torch.randn(10, 3), 2)
