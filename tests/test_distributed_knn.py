"""Sharded kNN over 2 gloo processes equals the single-process search."""
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import vtalign
from vtalign._distributed_knn import knn as sharded_knn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, sizes, k, layers):
    os.environ.pop("TRITON_INTERPRET", None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=__import__("datetime").timedelta(seconds=60))
    try:
        x = torch.randn(layers, sum(sizes), 12, generator=torch.Generator().manual_seed(5))
        lo = sum(sizes[:rank])
        v, i = sharded_knn(x[:, lo:lo + sizes[rank]], k)
        torch.save({"v": v, "i": i}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sizes,k", [((40, 40), 5), ((13, 50), 20), ((3, 60), 9)])
def test_two_gloo_ranks_equal_single_process(sizes, k):
    layers = 2
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, _free_port(), tmp, list(sizes), k, layers), nprocs=2, join=True)
        parts = [torch.load(os.path.join(tmp, f"{r}.pt"), weights_only=True) for r in range(2)]
    x = torch.randn(layers, sum(sizes), 12, generator=torch.Generator().manual_seed(5))
    fv, fi = vtalign.cosine_knn(x, k)
    assert torch.equal(torch.cat([p["i"] for p in parts], 1), fi)
    torch.testing.assert_close(torch.cat([p["v"] for p in parts], 1), fv, atol=1e-6, rtol=0)


def test_needs_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        sharded_knn(torch.randn(10, 3), 2)
