import itertools

import pytest
import torch

from vtalign.twins import TemporalAugmentation, bounded_permutations, self_similarity_change


@pytest.mark.parametrize("n,s", [(1, 2), (4, 0), (5, 1), (6, 2), (7, 3)])
def test_bounded_permutations_are_exactly_the_allowed_ones(n, s):
    want = [list(p) for p in itertools.permutations(range(n)) if all(abs(p[i] - i) <= s for i in range(n))]
    got = bounded_permutations(n, s)
    assert got.tolist() == want
    assert got[0].tolist() == list(range(n))


def test_bounded_permutations_checks():
    with pytest.raises(ValueError, match="max_shift"):
        bounded_permutations(4, -1)
    with pytest.raises(ValueError, match="permutations"):
        bounded_permutations(40, 3)


def test_self_similarity_change_by_hand():
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])
    perms = torch.tensor([[0, 1, 2], [1, 0, 2]])
    s = -(x[0] @ x[0].T)
    sp = s[[1, 0, 2]][:, [1, 0, 2]]
    d = self_similarity_change(x, perms)
    assert d.shape == (1, 2)
    assert float(d[0, 0]) == 0.0
    assert float(d[0, 1]) == pytest.approx(float(torch.linalg.norm(s - sp)))


def test_distribution_prefers_structure_keeping_permutations(gen):
    x = torch.randn(3, 6, 4, generator=gen)
    aug = TemporalAugmentation(max_shift=2, sharpness=50.0)
    probs, perms = aug.distribution(x)
    assert probs.shape == (3, len(perms))
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    d = self_similarity_change(x, perms)
    # softmin: a smaller change never gets a smaller probability; the identity is the most likely
    order = torch.argsort(d, dim=1)
    assert bool((probs.gather(1, order).diff(dim=1) <= 1e-7).all())
    assert bool((probs.argmax(1) == 0).all())
    flat = TemporalAugmentation(sharpness=0.0).distribution(x)[0]
    torch.testing.assert_close(flat, torch.full_like(flat, 1.0 / len(perms)))


def test_forward_permutes_within_bounds_seeded_and_differentiable(gen):
    x = torch.randn(8, 6, 4, generator=gen, requires_grad=True)
    aug = TemporalAugmentation(max_shift=2, sharpness=0.01)
    y, perm = aug(x, torch.Generator().manual_seed(7))
    y2, perm2 = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(perm, perm2) and torch.equal(y, y2)
    assert bool(((perm - torch.arange(6)).abs() <= 2).all())
    assert bool((perm != torch.arange(6)).any())  # a soft distribution does shuffle
    for b in range(8):
        assert torch.equal(y[b], x[b, perm[b]])
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_augmentation_checks():
    with pytest.raises(ValueError, match="sharpness"):
        TemporalAugmentation(sharpness=float("nan"))
    with pytest.raises(TypeError, match="x"):
        TemporalAugmentation()(torch.zeros(3, 4))
