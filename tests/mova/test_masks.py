import pytest
import torch

from vtalign.mova import ConceptMaskNetwork, MoVA, MoVALoss, TemporalMaskNetwork, slot_encoding, straight_through_mask


def test_straight_through_is_binary_with_sigmoid_gradient(gen):
    logits = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    mask, prob = straight_through_mask(logits)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask.detach(), (logits > 0).double())
    w = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    (mask * w).sum().backward()
    p = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, w * p * (1 - p))


def test_straight_through_rejects_integer_logits():
    with pytest.raises(TypeError, match="logits"):
        straight_through_mask(torch.zeros(3, dtype=torch.long))


def test_slot_encoding_distinct_and_checked():
    e = slot_encoding(50, 16)
    assert e.shape == (50, 16)
    d = torch.cdist(e, e) + torch.eye(50) * 10
    assert float(d.min()) > 1e-3  # every slot gets its own code
    with pytest.raises(ValueError, match="dim"):
        slot_encoding(4, 7)


def test_mask_network_shapes(gen):
    tm = TemporalMaskNetwork(12, 8, hidden=16, slot_dim=8)
    cm = ConceptMaskNetwork(10, 8, hidden=16)
    m, p = tm(torch.randn(3, 12, generator=gen), 5)
    assert m.shape == p.shape == (3, 5, 8)
    m, p = cm(torch.randn(3, 5, 10, generator=gen))
    assert m.shape == p.shape == (3, 5, 8)


def test_gradients_flow_through_both_masks(gen):
    torch.manual_seed(0)
    model = MoVA(10, 12, embed_dim=8, hidden=16, mask_hidden=16)
    frames = torch.randn(4, 6, 10, generator=gen)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[1, 4:] = False
    caps = torch.randn(4, 12, generator=gen)
    # only the slot term: the projections alone cannot carry its gradient to the mask networks
    loss, _ = MoVALoss(lambda_global=0.0, lambda_temporal=1.0, lambda_sparsity=0.0)(model(frames, valid, caps))
    loss.backward()
    for net in (model.temporal_mask, model.concept_mask):
        g = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
