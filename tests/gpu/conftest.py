"""tests/gpu: the ops at realistic sizes on a CUDA device, and what only a GPU has (more
than 2^31 elements, a second device, NCCL, compiled graphs). Every test also runs on a
machine without CUDA, at tiny sizes in the Triton interpreter, so this code is exercised
(and kept working) everywhere; a test that needs CUDA by nature skips there, saying why."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._device import ON_CUDA


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of the op checks (see the `sizes` fixture)."""
    knn: tuple[int, int, int, int]            # layers L, rows N, features D, neighbours k
    knn_queries: int                          # M queries of the query/key form
    overlap: tuple[int, int, int, int]        # La, Lb, N, k
    mutual: tuple[int, int, int, int]         # N, Da, Db, k
    contrastive: tuple[int, int]              # B, D
    slot: tuple[int, int, int]                # B, T, D
    soft_dtw: tuple[int, int, int, int]       # B, N, M, D
    pairwise: tuple[int, int, int]            # B, N, D (B x B pairs)


# CUDA: sizes of a real run (a retrieval batch, a layer sweep, clips of a few hundred
# frames), with the float64 reference still quick (on the GPU where it is dense, on the
# CPU for the soft-DTW DP, which is a Python loop over cells).
REALISTIC = Sizes(knn=(2, 16384, 512, 10), knn_queries=1024, overlap=(3, 2, 8192, 10), mutual=(4096, 384, 256, 10),
                  contrastive=(4096, 512), slot=(256, 8, 128), soft_dtw=(8, 128, 100, 64), pairwise=(4, 48, 32))
# CPU: the interpreter runs every program's ops one by one in numpy, so a few tiles
# (ragged ones included) are all it can afford.
TINY = Sizes(knn=(2, 70, 20, 5), knn_queries=9, overlap=(2, 2, 33, 5), mutual=(60, 12, 10, 4),
             contrastive=(40, 24), slot=(12, 3, 8), soft_dtw=(2, 9, 7, 4), pairwise=(2, 6, 4))


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    """REALISTIC on a CUDA device, TINY in the interpreter."""
    return REALISTIC if ON_CUDA else TINY



# Most telling first: a run that tools/gpu_check.sh stops at its time limit has still
# compared every op with the reference. Files not listed keep their place after these.
_ORDER = ("test_ops.py", "test_large.py", "test_second_device.py", "test_nccl.py", "test_compile.py")
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    slots = [n for n, item in enumerate(items) if item.path.parent == _HERE]
    ranked = sorted((items[n] for n in slots),
                    key=lambda item: _ORDER.index(item.path.name) if item.path.name in _ORDER else len(_ORDER))
    for n, item in zip(slots, ranked):
        items[n] = item
