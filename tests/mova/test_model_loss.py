import pytest
import torch

import vtalign.ops.contrastive.api as ops_contrastive
from vtalign.mova import ClipBaseline, MoVA, MoVALoss, mask_density, masked_mean, pool_slots
from vtalign.ops._common import has_cpp
from vtalign.reference import contrastive as ref

DV, DT, D = 10, 12, 8


def _batch(gen, b=6, t=5):
    frames = torch.randn(b, t, DV, generator=gen)
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[0, 3:] = False
    valid[2, 1:] = False
    return frames, valid, torch.randn(b, DT, generator=gen)


def _model(seed=0):
    torch.manual_seed(seed)
    return MoVA(DV, DT, embed_dim=D, hidden=16, mask_hidden=16)


def test_forward_shapes_and_masked_products(gen):
    frames, valid, caps = _batch(gen)
    out = _model()(frames, valid, caps)
    assert out.z_t.shape == (6, D) and out.z_v.shape == out.ta.shape == out.vb.shape == (6, 5, D)
    torch.testing.assert_close(out.ta, out.text_mask * out.z_t[:, None, :])
    torch.testing.assert_close(out.vb, out.frame_mask * out.z_v)
    assert float(out.z_v.detach()[~valid].abs().max()) == 0.0
    torch.testing.assert_close(out.pooled_v[0], out.z_v[0, :3].mean(0))


def test_text_mask_ignores_the_video(gen):
    frames, valid, caps = _batch(gen)
    m = _model()
    a = m(frames, valid, caps).text_mask
    b = m(torch.randn(frames.shape, generator=gen), valid, caps).text_mask
    assert torch.equal(a, b)


def test_loss_matches_its_definition_with_reference_ops(gen):
    frames, valid, caps = _batch(gen)
    out = _model()(frames, valid, caps)
    fn = MoVALoss(lambda_global=0.7, lambda_temporal=1.3, lambda_sparsity=0.2, pool="lse", pool_temperature=0.2)
    total, parts = fn(out)
    sg, st = fn.global_loss.scale().detach(), fn.slot_loss.scale().detach()
    g = ref.contrastive_loss(out.z_t.detach().double(), out.pooled_v.detach().double(), sg)
    s = ref.slot_contrastive_loss(out.ta.detach().double(), out.vb.detach().double(), valid, st, pool="lse",
                                  pool_temperature=0.2)
    w = valid.double()[..., None]
    dens = 0.5 * ((out.text_mask.detach() * w).sum() + (out.frame_mask.detach() * w).sum()) / (w.sum() * D)
    expect = 0.7 * g + 1.3 * s + 0.2 * dens
    torch.testing.assert_close(total.double(), expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["density"].double(), dens)


def test_fused_ops_run_not_the_reference(gen, monkeypatch):
    seen = []
    resolve = ops_contrastive.resolve_backend

    def recording(backend, tensors, **kw):
        seen.append(resolve(backend, tensors, **kw))
        return seen[-1]

    def forbidden(*a, **k):
        raise AssertionError("the float64 reference ran")

    monkeypatch.setattr(ops_contrastive, "resolve_backend", recording)
    monkeypatch.setattr(ref, "contrastive_loss", forbidden)
    monkeypatch.setattr(ref, "slot_contrastive_loss", forbidden)
    frames, valid, caps = _batch(gen)
    total, _ = MoVALoss()(_model()(frames, valid, caps))
    total.backward()
    assert seen == ["cpp" if has_cpp() else "torch"] * 2


def test_one_step_lowers_the_loss_on_a_fixed_batch(gen):
    frames, valid, caps = _batch(gen, b=16, t=6)
    model, fn = _model(), MoVALoss()
    params = list(model.parameters()) + list(fn.parameters())
    opt = torch.optim.SGD(params, lr=0.05)
    before, _ = fn(model(frames, valid, caps))
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after, _ = fn(model(frames, valid, caps))
    assert float(after) < float(before.detach())


def test_seeded_training_repeats_exactly(gen):
    frames, valid, caps = _batch(gen, b=8)

    def train(seed):
        model, fn = _model(seed), MoVALoss()
        opt = torch.optim.Adam(list(model.parameters()) + list(fn.parameters()), lr=1e-2)
        for _ in range(3):
            loss, _ = fn(model(frames, valid, caps))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.detach(), [p.detach().clone() for p in model.parameters()]

    (l1, p1), (l2, p2), (l3, _) = train(1), train(1), train(2)
    assert torch.equal(l1, l2) and all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert not torch.equal(l1, l3)


@pytest.mark.parametrize("pool", ["mean", "max", "lse"])
def test_scores_are_the_loss_similarity(gen, pool):
    frames, valid, caps = _batch(gen)
    m = _model()
    with torch.no_grad():
        out = m(frames, valid, caps)
        got = m.scores(caps, frames, valid, global_weight=0.3, slot_weight=2.0, pool=pool, pool_temperature=0.2,
                       chunk=4)
    unit = lambda x: x.double() / x.double().norm(dim=-1, keepdim=True)  # noqa: E731
    expect = 0.3 * unit(out.z_t) @ unit(out.pooled_v).T + 2.0 * ref.slot_logits(
        out.ta.double(), out.vb.double(), valid, pool=pool, pool_temperature=0.2)
    torch.testing.assert_close(got.double(), expect, rtol=1e-5, atol=1e-5)


def test_pool_slots_and_masked_mean_check_by_hand():
    cos = torch.tensor([[[0.2, 0.8, -1.0]]])
    valid = torch.tensor([[True, True, False]])
    assert pool_slots(cos, valid, "mean", 0.1).item() == pytest.approx(0.5)
    assert pool_slots(cos, valid, "max", 0.1).item() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="pool"):
        pool_slots(cos, valid, "median", 0.1)
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, valid).item() == pytest.approx(2.0)


def test_baseline_scores_are_pooled_cosines(gen):
    frames, valid, caps = _batch(gen)
    torch.manual_seed(0)
    b = ClipBaseline(DV, DT, embed_dim=D, hidden=16)
    z_t, pooled = b(frames, valid, caps)
    expect = torch.nn.functional.normalize(z_t, dim=1) @ torch.nn.functional.normalize(pooled, dim=1).T
    torch.testing.assert_close(b.scores(caps, frames, valid), expect.detach())


def test_bad_inputs_raise(gen):
    frames, valid, caps = _batch(gen)
    m = _model()
    with pytest.raises(ValueError, match="frames"):
        m(torch.randn(6, 5, DV + 1), valid, caps)
    with pytest.raises(TypeError, match="valid"):
        m(frames, valid.float(), caps)
    bad = valid.clone()
    bad[1] = False
    with pytest.raises(ValueError, match="valid"):
        m(frames, bad, caps)
    with pytest.raises(ValueError, match="captions"):
        m(frames, valid, torch.randn(6, DT + 2))
    with pytest.raises(ValueError, match="same number"):
        m(frames, valid, caps[:4])
    with pytest.raises(ValueError, match="lambda_sparsity"):
        MoVALoss(lambda_sparsity=-1.0)
    with pytest.raises(TypeError, match="lambda_global"):
        MoVALoss(lambda_global="1")
    with pytest.raises(TypeError, match="MoVAOutput"):
        MoVALoss()(caps)
    with pytest.raises(ValueError, match="embed_dim"):
        MoVA(DV, DT, embed_dim=0)


def test_mask_density_counts_valid_slots_only(gen):
    frames, valid, caps = _batch(gen)
    out = _model()(frames, valid, caps)
    out.text_mask = torch.ones_like(out.text_mask)
    out.frame_mask = torch.zeros_like(out.frame_mask)
    out.frame_mask[~valid] = 1.0  # padding must not count
    assert float(mask_density(out)) == pytest.approx(0.5)
