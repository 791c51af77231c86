"""vtalign.compat.open_clip.ClipLoss against open_clip's definition (dense logits +
cross-entropy), single process and over 2 gloo ranks."""
import os
import tempfile

import pytest
import torch
import torch.nn.functional as F

from tests._gloo import run_ranks
from vtalign.compat.open_clip import ClipLoss


def upstream(img, txt, scale, bias=None):
    li, lt = scale * img @ txt.T, scale * txt @ img.T
    if bias is not None:
        li, lt = li + bias, lt + bias
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2


def feats(seed, n=12, d=8):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return img.requires_grad_(True), txt.requires_grad_(True)


@pytest.mark.parametrize("bias", [None, -2.5])
def test_single_process_values_and_gradients(bias):
    img, txt = feats(0)
    scale = torch.tensor(14.3, dtype=torch.float64, requires_grad=True)
    ours = ClipLoss(cache_labels=True)(img, txt, scale, logit_bias=bias)
    want = upstream(img, txt, scale, bias)
    torch.testing.assert_close(ours, want, rtol=1e-8, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (img, txt, scale)), torch.autograd.grad(want, (img, txt, scale))):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    d = ClipLoss()(img, txt, scale, output_dict=True)
    assert set(d) == {"contrastive_loss"}
    li, lt = ClipLoss().get_logits(img, txt, scale)
    torch.testing.assert_close(li, scale * img @ txt.T)


def _worker(rank, world, out, local_loss, with_grad):
    img, txt = feats(3)
    n = img.shape[0] // world
    li, lt = img[rank * n:(rank + 1) * n].detach().requires_grad_(True), \
        txt[rank * n:(rank + 1) * n].detach().requires_grad_(True)
    loss = ClipLoss(local_loss=local_loss, gather_with_grad=with_grad, rank=rank, world_size=world)(li, lt, 10.0)
    loss.backward()
    torch.save({"loss": loss.detach(), "gi": li.grad, "gt": lt.grad}, os.path.join(out, f"{rank}.pt"))


def _upstream_rank(rank, world, local_loss, with_grad):
    """open_clip's rule written out for one rank: its loss and the gradient its
    local features receive (summed over ranks when gathered with grad)."""
    img, txt = feats(3)
    n = img.shape[0] // world

    def loss_of(r, i_all, t_all):
        if local_loss:
            labels = torch.arange(n) + n * r
            li = 10.0 * i_all[r * n:(r + 1) * n] @ t_all.T
            lt = 10.0 * t_all[r * n:(r + 1) * n] @ i_all.T
            return (F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2
        return upstream(i_all, t_all, 10.0)

    i_all, t_all = img.detach().clone().requires_grad_(True), txt.detach().clone().requires_grad_(True)
    own = loss_of(rank, i_all, t_all)
    total = sum(loss_of(r, i_all, t_all) for r in range(world)) if with_grad else own
    gi, gt = torch.autograd.grad(total, (i_all, t_all))
    return own.detach(), gi[rank * n:(rank + 1) * n], gt[rank * n:(rank + 1) * n]


@pytest.mark.parametrize("local_loss,with_grad", [(False, False), (False, True), (True, False), (True, True)])
def test_two_gloo_ranks_match_open_clip(local_loss, with_grad):
    with tempfile.TemporaryDirectory() as tmp:
        run_ranks(_worker, 2, tmp, local_loss, with_grad)
        for rank in range(2):
            got = torch.load(os.path.join(tmp, f"{rank}.pt"), weights_only=True)
            loss, gi, gt = _upstream_rank(rank, 2, local_loss, with_grad)
            torch.testing.assert_close(got["loss"], loss, rtol=1e-8, atol=1e-12)
            if local_loss and not with_grad:
                # upstream's no-grad gather leaves only the local rows differentiable
                continue
            torch.testing.assert_close(got["gi"], gi, rtol=1e-7, atol=1e-10)
            torch.testing.assert_close(got["gt"], gt, rtol=1e-7, atol=1e-10)
