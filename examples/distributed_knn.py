"""Sharded exact kNN with torchrun:

    torchrun --nproc_per_node 2 examples/distributed_knn.py

Each rank owns a slice of the samples; the result on every rank equals the
matching rows of the single-process `vtalign.cosine_knn`.
"""
import torch
import torch.distributed as dist

import vtalign
from vtalign._distributed_knn import knn as sharded_knn


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x = torch.randn(3000, 64, generator=torch.Generator().manual_seed(0))  # same data on every rank
    bounds = torch.linspace(0, x.shape[0], world + 1).long().tolist()
    values, indices = sharded_knn(x[bounds[rank]:bounds[rank + 1]], k=10)
    _, full = vtalign.cosine_knn(x, 10)
    same = torch.equal(indices, full[bounds[rank]:bounds[rank + 1]])
    print(f"rank {rank}/{world}: rows {bounds[rank]}..{bounds[rank + 1] - 1}, "
          f"first neighbours {indices[0, :5].tolist()}, equal to single-process: {same}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
