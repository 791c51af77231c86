"""`sweep_files` with its kNN searches on the Triton device (`device=` / `--device cuda`)
against the CPU: neighbour lists equal wherever the k-th and (k+1)-th float64
similarities are further apart than float32 rounding, so each cell's score can move by
at most 1/N per row where they are not (a near-tie). Realistic N on CUDA; tiny in the
Triton interpreter without one."""
import pytest
import torch

from tests._device import ON_CUDA, TRITON_DEVICE
from tests.gpu.tolerances import COSINE
from vtalign.probe.features import save_features
from vtalign.probe.file_sweep import sweep_files

pytestmark = pytest.mark.gpu

N, D, K = (2048, 256, 10) if ON_CUDA else (40, 12, 4)


def _near_ties(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rows whose k-th and (k+1)-th neighbours (float64 cosine, self excluded) are within rounding."""
    u = torch.nn.functional.normalize(x.double(), dim=1)
    s = (u @ u.T).fill_diagonal_(float("-inf"))
    top = s.topk(k + 1, dim=1).values
    return (top[:, k - 1] - top[:, k]) <= 4 * COSINE["float32"]


def test_sweep_on_the_device_equals_the_cpu(tmp_path):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(N, 8, generator=g)
    files = {}
    for axis, counts, layers in (("frames", (1, 2, 4), 2), ("captions", (1, 2, 3), 3)):
        for c in counts:
            f = torch.stack([torch.tanh(z @ torch.randn(8, D, generator=g) * c
                                        + torch.randn(N, D, generator=g)) for _ in range(layers)], 1)
            path = str(tmp_path / f"m{axis}_pool-avg_num{axis}-{c}.pt")
            save_features(path, f)
            files[path] = f
    video = [p for p in files if "numframes" in p]
    text = [p for p in files if "numcaptions" in p]
    cpu = sweep_files(video, text, k=K, backend="cpp" if not ON_CUDA else "auto", progress=False)
    dev = sweep_files(video, text, k=K, backend="triton", device=TRITON_DEVICE if ON_CUDA else None,
                      progress=False)
    ties = {p: torch.stack([_near_ties(f[:, l], K) for l in range(f.shape[1])]).sum(1) for p, f in files.items()}
    i = 0
    for vp in video:
        for tp in text:
            bound = (ties[vp][:, None] + ties[tp][None, :]).double() / N
            diff = (dev.sweep.layer_scores[i] - cpu.sweep.layer_scores[i]).abs()
            assert bool((diff <= bound + 1e-12).all()), (vp, tp, diff.max(), bound)
            i += 1
