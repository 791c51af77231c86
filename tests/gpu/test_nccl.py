"""vtalign.distributed over NCCL: two ranks on the one GPU of the test machine, with the
Triton kernels, against the float64 reference of the whole batch (the gloo CPU tests,
tests/test_distributed_*.py, check the same against the single-process ops).

NCCL usually refuses two ranks on one device ("Duplicate GPU detected"): the first
collective is a probe, and a refusal skips the test with NCCL's own message. Without
CUDA there is no NCCL to try: skipped.
"""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist

from tests._device import ON_CUDA
from tests._gloo import Refused, run_ranks
from tests.gpu.checks import assert_passed, neighbour_checks, unit64
from tests.gpu.tolerances import COSINE, loss_tol, max_rel_error
from vtalign.reference import contrastive as ref_c

pytestmark = pytest.mark.gpu

WORLD = 2
SCALE = 10.0


@pytest.fixture(autouse=True)
def _needs_nccl():
    if not ON_CUDA:
        pytest.skip("needs a CUDA device: NCCL moves CUDA tensors only")
    if not dist.is_nccl_available():
        pytest.skip("this torch build has no NCCL")


def _probe_nccl() -> None:
    """Every rank on device 0; the first collective tells whether NCCL accepts that."""
    torch.cuda.set_device(0)
    t = torch.ones(1, device="cuda")
    try:
        dist.all_reduce(t)
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - whatever NCCL raises here is its refusal, not vtalign's
        raise Refused(f"{type(e).__name__}: {e}") from None
    assert float(t) == WORLD


def _shard(rank: int, total: int) -> slice:
    lo = rank * total // WORLD
    return slice(lo, (rank + 1) * total // WORLD)


def _knn_worker(rank, world, out_dir, L, N, D, k):
    _probe_nccl()
    from vtalign import distributed as vd

    x = torch.randn(L, N, D, generator=torch.Generator().manual_seed(5))
    v, i = vd.knn(x[:, _shard(rank, N)].cuda(), k)  # "auto": Triton on CUDA
    assert v.is_cuda and i.is_cuda
    torch.save({"v": v.cpu(), "i": i.cpu()}, os.path.join(out_dir, f"{rank}.pt"))


def test_distributed_knn_two_nccl_ranks(sizes):
    L, N, D, k = sizes.knn
    N = min(N, 4096)  # the sharded search merges per-shard lists: 4096 rows show that as well as 16k
    with tempfile.TemporaryDirectory() as tmp:
        run_ranks(_knn_worker, WORLD, tmp, L, N, D, k, backend="nccl", timeout_s=300)
        parts = [torch.load(os.path.join(tmp, f"{r}.pt"), weights_only=True) for r in range(WORLD)]
    v, i = torch.cat([p["v"] for p in parts], 1), torch.cat([p["i"] for p in parts], 1)
    x64 = unit64(torch.randn(L, N, D, generator=torch.Generator().manual_seed(5)).cuda())
    assert_passed(neighbour_checks("distributed.knn", x64, x64, v, i, k, COSINE["float32"], self_shift=0))


def _contrastive_worker(rank, world, B, D, T):
    _probe_nccl()
    from vtalign import distributed as vd

    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    ta, vb = torch.randn(B, T, D, generator=g), torch.randn(B, T, D, generator=g)
    valid = torch.rand(B, T, generator=g) < 0.7
    valid[:, 0] = True
    pos = (torch.rand(B, B, generator=g) < 4.0 / B) | torch.eye(B, dtype=torch.bool)
    sh = _shard(rank, B)
    tol = loss_tol("float32", SCALE)
    for name, local, full, inputs in (
            ("contrastive", lambda x, y, s: vd.contrastive_loss(x, y, s, positives=pos.cuda(), backend="triton"),
             lambda x, y, s: ref_c.contrastive_loss(x, y, s, positives=pos.cuda()), (a, b)),
            ("slot[lse]", lambda x, y, s: vd.slot_contrastive_loss(x, y, valid[sh].cuda(), s, pool="lse",
                                                                    backend="triton"),
             lambda x, y, s: ref_c.slot_contrastive_loss(x, y, valid.cuda(), s, pool="lse"), (ta, vb))):
        mine = [t[sh].cuda().requires_grad_() for t in inputs]
        s = torch.tensor(SCALE, device="cuda", requires_grad=True)
        got = local(*mine, s)
        got.backward()
        every = [t.cuda().double().requires_grad_() for t in inputs]
        s64 = torch.tensor(SCALE, dtype=torch.float64, device="cuda", requires_grad=True)
        want = full(*every, s64)
        want.backward()
        gs = s.grad.clone()
        dist.all_reduce(gs)  # each rank holds its share of the scale's gradient
        grad_tol = tol / 0.1 if name.startswith("slot") else tol  # lse pool: 1/τ more rounding
        errors = {"loss": abs(float(got) - float(want)) / max(1.0, abs(float(want))),
                  "scale gradient": max_rel_error(gs, s64.grad)}
        for n, (x, r) in enumerate(zip(mine, every)):
            errors[f"gradient of input {n}"] = max_rel_error(x.grad, r.grad[sh])
        bad = {k: e for k, e in errors.items() if e > (tol if k == "loss" else grad_tol)}
        assert not bad, f"rank {rank}, {name}: {bad} (tolerance {tol:.1e})"


def test_distributed_contrastive_two_nccl_ranks(sizes):
    B, D = sizes.contrastive
    _, T, _ = sizes.slot
    run_ranks(_contrastive_worker, WORLD, min(B, 2048), min(D, 256), T, backend="nccl", timeout_s=300)
