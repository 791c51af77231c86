import importlib
import math

import pytest
import torch

import vtalign
from vtalign.ops._common import has_cpp
from vtalign.twins import TwinsLoss, s2dtw_logits, twins_loss

soft_dtw_ops = importlib.import_module("vtalign.ops.soft_dtw.weak_alignment")


def _seqs(gen, b=4, n=5, m=6, d=8, dtype=torch.float64):
    return (torch.randn(b, n, d, generator=gen, dtype=dtype), torch.randn(b, m, d, generator=gen, dtype=dtype))


def _by_definition(clips, caps, temperature, symmetric, **kw):
    """Explicit loops over pairs: D[a][b] = S2DTW(clips_a, captions_b) one pair at a time."""
    b = clips.shape[0]
    d = [[float(vtalign.s2dtw(clips[a:a + 1], caps[c:c + 1], **kw)[0]) for c in range(b)] for a in range(b)]
    losses = []
    for i in range(b):
        t2v = math.log(sum(math.exp(-d[a][i] / temperature) for a in range(b))) + d[i][i] / temperature
        if symmetric:
            v2t = math.log(sum(math.exp(-d[i][c] / temperature) for c in range(b))) + d[i][i] / temperature
            t2v = 0.5 * (t2v + v2t)
        losses.append(t2v)
    return losses


@pytest.mark.parametrize("temperature,symmetric", [(1.0, False), (0.5, False), (0.7, True)])
def test_loss_equals_its_definition(gen, temperature, symmetric):
    clips, caps = _seqs(gen)
    kw = dict(gamma=0.2, smoothing_gamma=0.1, null_cost=0.5, cost="negdot")
    expect = _by_definition(clips, caps, temperature, symmetric, **kw)
    per = twins_loss(clips, caps, temperature=temperature, symmetric=symmetric, reduction="none", **kw)
    torch.testing.assert_close(per, torch.tensor(expect, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    mean = twins_loss(clips, caps, temperature=temperature, symmetric=symmetric, **kw)
    assert float(mean) == pytest.approx(sum(expect) / len(expect), rel=1e-9)
    total = twins_loss(clips, caps, temperature=temperature, symmetric=symmetric, reduction="sum", **kw)
    assert float(total) == pytest.approx(sum(expect), rel=1e-9)


def test_logits_layout_and_lengths(gen):
    clips, caps = _seqs(gen, b=3)
    lengths_v, lengths_t = [5, 3, 4], [6, 2, 5]
    lg = s2dtw_logits(clips, caps, temperature=2.0, clip_lengths=lengths_v, caption_lengths=lengths_t)
    for i in range(3):      # caption sequence i (row)
        for a in range(3):  # clip sequence a (column)
            v = vtalign.s2dtw(clips[a:a + 1, :lengths_v[a]], caps[i:i + 1, :lengths_t[i]])[0]
            assert float(lg[i, a]) == pytest.approx(-float(v) / 2.0, rel=1e-9, abs=1e-9)


def test_gradients_match_float64_finite_differences(gen):
    clips, caps = _seqs(gen, b=3, n=3, m=4, d=4)
    clips.requires_grad_(True)
    caps.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: twins_loss(x, y, symmetric=True, temperature=0.8, gamma=0.3),
                                    (clips, caps), eps=1e-6, atol=1e-5)


def test_fused_op_runs_not_the_reference(gen, monkeypatch):
    seen = []
    resolve = soft_dtw_ops.resolve_backend

    def recording(backend, tensors, **kw):
        seen.append(resolve(backend, tensors, **kw))
        return seen[-1]

    def forbidden(*a, **k):
        raise AssertionError("the float64 reference ran")

    monkeypatch.setattr(soft_dtw_ops, "resolve_backend", recording)
    monkeypatch.setattr(soft_dtw_ops.ref, "s2dtw_pairwise", forbidden)
    clips, caps = _seqs(gen, dtype=torch.float32)
    clips.requires_grad_(True)
    twins_loss(clips, caps).backward()
    assert seen and set(seen) == {"cpp" if has_cpp() else "torch"}
    assert clips.grad is not None and bool(torch.isfinite(clips.grad).all())


def test_module_face_and_one_step_lowers_the_loss(gen):
    clips, caps = _seqs(gen, b=6, dtype=torch.float32)
    w = torch.nn.Linear(8, 8)
    loss_fn = TwinsLoss(temperature=0.5)
    before = loss_fn(w(clips), caps)
    before.backward()
    with torch.no_grad():
        for p in w.parameters():
            p -= 0.01 * p.grad
        after = loss_fn(w(clips), caps)
    assert float(after) < float(before.detach())


def test_bad_inputs_raise(gen):
    clips, caps = _seqs(gen)
    with pytest.raises(ValueError, match="same number of pairs"):
        twins_loss(clips, caps[:3])
    with pytest.raises(ValueError, match="temperature"):
        twins_loss(clips, caps, temperature=0.0)
    with pytest.raises(TypeError, match="temperature"):
        TwinsLoss(temperature="1")
    with pytest.raises(ValueError, match="reduction"):
        twins_loss(clips, caps, reduction="max")
    with pytest.raises(TypeError, match="symmetric"):
        twins_loss(clips, caps, symmetric=1)
    with pytest.raises(ValueError, match="clips"):
        twins_loss(clips[0], caps)
