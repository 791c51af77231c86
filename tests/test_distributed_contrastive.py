"""Global-negative contrastive losses over 2 gloo CPU processes equal the single-process
loss and gradients on the concatenated batch."""
import pytest
import torch
import torch.distributed as dist

from tests._gloo import run_ranks

WORLD = 2


def _data(sizes):
    g = torch.Generator().manual_seed(11)
    total = sum(sizes)
    a = torch.randn(total, 6, generator=g, dtype=torch.float64)
    b = torch.randn(total, 6, generator=g, dtype=torch.float64)
    ta = torch.randn(total, 3, 5, generator=g, dtype=torch.float64)
    vb = torch.randn(total, 3, 5, generator=g, dtype=torch.float64)
    valid = torch.rand(total, 3, generator=g) < 0.6
    valid[:, 1] = True
    pos = torch.rand(total, total, generator=g) < 0.2
    pos |= torch.eye(total, dtype=torch.bool)
    return a, b, ta, vb, valid, pos


def _check(rank, local_fn, global_fn, full_inputs, sizes):
    """Compare this rank's loss and shard gradients (and the summed scale gradient)."""
    off, n = sum(sizes[:rank]), sizes[rank]
    full = [x.detach().clone().requires_grad_(True) for x in full_inputs]
    s_full = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    want = global_fn(*full, s_full)
    want.backward()
    local = [x.detach()[off:off + n].clone().requires_grad_(True) for x in full_inputs]
    s_loc = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    got = local_fn(*local, s_loc)
    got.backward()
    torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)
    for x_loc, x_full in zip(local, full):
        torch.testing.assert_close(x_loc.grad, x_full.grad[off:off + n], rtol=1e-9, atol=1e-12)
    gs = s_loc.grad.clone()
    dist.all_reduce(gs)
    torch.testing.assert_close(gs, s_full.grad, rtol=1e-9, atol=1e-12)


def _worker(rank, world, sizes):
    torch.set_num_threads(1)
    import vtalign
    from vtalign import distributed as vd

    a, b, ta, vb, valid, pos = _data(sizes)
    off, n = sum(sizes[:rank]), sizes[rank]
    for sym in (True, False):
        for p in (None, pos):
            _check(rank,
                   lambda a_, b_, s, p=p, sym=sym: vd.contrastive_loss(a_, b_, s, positives=p, symmetric=sym,
                                                                       backend="torch", max_workspace_bytes=200),
                   lambda a_, b_, s, p=p, sym=sym: vtalign.contrastive_loss(a_, b_, s, positives=p, symmetric=sym,
                                                              backend="torch"),
                   (a, b), sizes)
    for pool in ("mean", "max", "lse"):
        _check(rank,
               lambda t_, v_, s, pool=pool: vd.slot_contrastive_loss(t_, v_, valid[off:off + n], s, pool=pool,
                                                          positives=pos, backend="torch"),
               lambda t_, v_, s, pool=pool: vtalign.slot_contrastive_loss(t_, v_, valid, s, pool=pool, positives=pos,
                                                               backend="torch"),
               (ta, vb), sizes)
    # reduction="none" gives this rank's slice of the per-pair losses
    got = vd.contrastive_loss(a[off:off + n], b[off:off + n], 7.0, reduction="none", backend="torch")
    want = vtalign.contrastive_loss(a, b, 7.0, reduction="none", backend="torch")
    torch.testing.assert_close(got, want[off:off + n])


@pytest.mark.parametrize("sizes", [(4, 7)])  # unequal shards: offsets and padding
def test_two_gloo_ranks_match_single_process(sizes):
    run_ranks(_worker, WORLD, list(sizes))


def test_needs_a_process_group():
    from vtalign import distributed as vd

    with pytest.raises(RuntimeError, match="process group"):
        vd.contrastive_loss(torch.randn(3, 4), torch.randn(3, 4), 10.0, backend="torch")
