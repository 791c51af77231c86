"""`vtalign.compat.calibrated_similarity` with its inputs and generator on the Triton
device, against the generic per-permutation loop (the upstream algorithm) calling a
float64 reference metric there: the same permutations (`torch.randperm` on that device
from the same seed), so p-values agree exactly and scores to float32 (CKA) or to one
neighbour per row of a near-tie (mutual kNN). Realistic N on CUDA; tiny on the CPU."""
import pytest
import torch

from tests._device import ON_CUDA, TRITON_DEVICE
from vtalign.compat import calibrated_similarity as cs

pytestmark = pytest.mark.gpu

N, K, PERMS = (1024, 10, 60) if ON_CUDA else (48, 5, 39)  # τ: an order statistic of the null


def mutual_knn_ref(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """platonic-rep's mutual kNN in float64 (inner products of the features as given, self
    excluded), as a plain callable."""
    def lists(z):
        s = z.double() @ z.double().T
        return s.fill_diagonal_(float("-inf")).topk(K, dim=1).indices

    a, b = lists(x), lists(y)
    hit = (a.unsqueeze(2) == b.unsqueeze(1)).any(2).sum()
    return hit.double() / (x.shape[0] * K)


def cka_ref(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA in float64 of the features as given (platonic-rep's `cka`)."""
    def centred(z):
        g = z.double() @ z.double().T
        h = torch.eye(len(z), dtype=g.dtype, device=g.device) - 1.0 / len(z)
        return h @ g @ h

    kx, ky = centred(x), centred(y)
    return (kx * ky).sum() / (kx.norm() * ky.norm())


def _layers():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(N, 16, generator=g)
    x = [base @ torch.randn(16, 48, generator=g) + 0.5 * torch.randn(N, 48, generator=g) for _ in range(3)]
    y = [base @ torch.randn(16, 32, generator=g) + 1.0 * torch.randn(N, 32, generator=g) for _ in range(2)]
    return [t.to(TRITON_DEVICE) for t in x], [t.to(TRITON_DEVICE) for t in y]


@pytest.mark.parametrize("name,ref,atol", [("mutual_knn", mutual_knn_ref, 3.0 / (N * K)), ("cka", cka_ref, 1e-5)])
def test_fast_path_on_the_device_equals_the_generic_loop(name, ref, atol):
    x, y = _layers()

    def gen():
        return torch.Generator(device=TRITON_DEVICE).manual_seed(7)

    fast = cs.calibrate_layers(x, y, name, K=PERMS, generator=gen(), **({"topk": K} if name == "mutual_knn" else {}))
    loop = cs.calibrate_layers(x, y, lambda a, b: ref(a, b).float(), K=PERMS, generator=gen())
    for v in fast:
        assert v.device.type == TRITON_DEVICE.type and v.dtype == torch.float32
    assert torch.equal(fast[1].cpu(), loop[1].cpu())  # p: the same permutations, the null far below T_obs
    torch.testing.assert_close(fast[0].cpu(), loop[0].cpu(), rtol=0, atol=atol)
    torch.testing.assert_close(fast[2].cpu(), loop[2].cpu(), rtol=0, atol=atol)
