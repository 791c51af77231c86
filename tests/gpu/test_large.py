"""More than 2^31 elements in one operand, on a GPU: element offsets row·stride past
2^31 must not wrap (the kernels compute them in int64). The interpreter reproduces the
wrap without the memory (tests/kernels/test_large_offsets.py); these run the compiled
kernels on real buffers of 4 GiB, with data built so that a row read from the wrong
place changes the result by orders of magnitude more than the tolerance.

They need CUDA by nature and skip without it, or when the GPU has too little free memory.
"""
import importlib

import pytest
import torch

import vtalign
from tests._device import ON_CUDA
from tests.gpu.tolerances import COSINE, ROUNDING, loss_tol
from vtalign.ops import unit_rows

pytestmark = pytest.mark.gpu

cmod = importlib.import_module("vtalign.ops.contrastive")

D = 1024
N0 = 2**31 // D  # the first row whose first element sits at offset 2^31
CHUNK = 1 << 17  # rows per float64 reference chunk (1 GiB)


def need_free_gib(gib: float) -> None:
    if not ON_CUDA:
        pytest.skip("needs a CUDA device with tens of GiB (without one: tests/kernels/test_large_offsets.py)")
    free, _ = torch.cuda.mem_get_info()
    if free < gib * 2**30:
        pytest.skip(f"needs {gib} GiB of free GPU memory, {free / 2**30:.1f} GiB free")


def unit64(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=-1)


def test_knn_keys_past_two_to_the_31_elements():
    """64 queries against 2^21 + 8192 bf16 keys (2.16e9 elements, 4 GiB). Each query's
    near-copy is planted past row 2^21, where offsets exceed 2^31: it must come first
    (cosine ≈ 0.995 against ≈ 0.15 for the best random key), and the whole top-k must
    match the float64 reference, computed in chunks."""
    need_free_gib(36)
    N, M, k = N0 + 8192, 64, 8
    g = torch.Generator(device="cuda").manual_seed(0)
    keys = torch.randn(N, D, device="cuda", dtype=torch.bfloat16, generator=g)
    q = torch.randn(M, D, device="cuda", generator=g)
    planted = N0 + 100 + 97 * torch.arange(M, device="cuda")
    keys[planted] = (q + 0.1 * torch.randn(M, D, device="cuda", generator=g)).to(torch.bfloat16)
    qb = q.to(torch.bfloat16)

    v, i = vtalign.knn(qb, keys, k, backend="triton")
    assert i.device.type == "cuda"
    assert torch.equal(i[:, 0], planted), "a planted neighbour past 2^31 elements was missed"

    q64 = unit64(qb)
    sims = torch.cat([q64 @ unit64(keys[s:s + CHUNK]).T for s in range(0, N, CHUNK)], 1)  # [M, N]
    rv = sims.topk(k, dim=1).values
    chosen = sims.gather(1, i)
    eps = COSINE["bfloat16"]
    assert float((v.double() - rv).abs().max()) <= eps  # the value at each rank
    assert float((chosen - v.double()).abs().max()) <= eps  # the value belongs to the index
    assert float((chosen - rv).abs().max()) <= 2 * eps  # the chosen keys are a true top-k
    assert int(i.max()) < N and bool((i >= 0).all())


def test_contrastive_rows_past_two_to_the_31_elements():
    """Captions a [2^21 + 4096, 1024] (bf16 unit rows, 2.15e9 elements) against 64 video
    rows b, through `infonce_parts` (what `contrastive_loss` runs after normalising):
    both forward passes read a (as rows, and as the columns of the column pass), the
    backward writes da and reads a again for db. Rows before 2^21 are positives of
    videos 1..63; the rows past 2^21 are the only positives of video 0, so a read that
    wraps below 2^31 drops video 0's positives (its loss grows by ~10) and misplaces
    those rows' losses and gradients (their positive logit falls from ~7 to ~0).

    Compared with float64 on the very bf16 rows the kernels multiply (float32's per-
    cosine bound). The column sums run over 2M rows in ~65k tiles, one float32 add per
    tile: up to 65k·2^-24 ≈ 4e-3 relative in a column's log-sum-exp (typically ~1e-5);
    gradients are returned in bf16 (2^-8)."""
    need_free_gib(28)
    N, M, scale = N0 + 4096, 64, 10.0
    g = torch.Generator(device="cuda").manual_seed(1)
    b = unit_rows(torch.randn(M, D, device="cuda", generator=g).to(torch.bfloat16))
    rows = torch.arange(N, device="cuda")
    col = torch.where(rows < N0, 1 + rows % (M - 1), torch.zeros_like(rows))
    a = torch.empty(N, D, device="cuda", dtype=torch.bfloat16)
    for s in range(0, N, CHUNK):  # a caption is its video's row plus noise of the same norm: cosine ≈ 0.7
        c = col[s:s + CHUNK]
        a[s:s + CHUNK] = unit_rows(b[c].float() + torch.randn(len(c), D, device="cuda", generator=g) / D ** 0.5
                                   ).to(torch.bfloat16)
    pos = col[:, None] == torch.arange(M, device="cuda")[None, :]
    a.requires_grad_(True)
    b.requires_grad_(True)

    row, col_loss = cmod.infonce_parts(a, b, torch.tensor(scale, device="cuda"), pos, backend="triton")
    (row.sum() + col_loss.sum()).backward()

    # float64 reference, in chunks: statistics first (the columns' need every row) ...
    b64 = b.detach().double()
    ref_row = torch.empty(N, dtype=torch.float64, device="cuda")
    col_all = torch.full((M,), float("-inf"), dtype=torch.float64, device="cuda")
    col_pos = col_all.clone()

    def logits(s):
        return scale * (a.detach()[s:s + CHUNK].double() @ b64.T), pos[s:s + CHUNK]

    for s in range(0, N, CHUNK):
        z, p = logits(s)
        zp = z.masked_fill(~p, float("-inf"))
        ref_row[s:s + len(z)] = torch.logsumexp(z, 1) - torch.logsumexp(zp, 1)
        col_all = torch.logaddexp(col_all, torch.logsumexp(z, 0))
        col_pos = torch.logaddexp(col_pos, torch.logsumexp(zp, 0))
    ref_col = col_all - col_pos
    # ... then dL/dlogits per chunk: the gradient rows of a to compare, and all of b's
    check = torch.cat([torch.arange(0, 2048, device="cuda"), torch.arange(N0 - 1024, N, device="cuda")])
    ref_da, ref_db = [], torch.zeros(M, D, dtype=torch.float64, device="cuda")
    for s in range(0, N, CHUNK):
        z, p = logits(s)
        lse_r, plse_r = torch.logsumexp(z, 1, keepdim=True), torch.logsumexp(z.masked_fill(~p, float("-inf")), 1,
                                                                             keepdim=True)
        G = (torch.exp(z - lse_r) - p * torch.exp(z - plse_r) + torch.exp(z - col_all) - p * torch.exp(z - col_pos))
        ref_db += scale * G.T @ a.detach()[s:s + len(z)].double()
        sel = check[(check >= s) & (check < s + len(z))]
        ref_da.append(scale * G[sel - s] @ b64)
    ref_da = torch.cat(ref_da)

    # the construction discriminates: small losses where a wrapped read would give large ones
    assert float(ref_row[N0:].max()) < 1.0 and float(ref_col[0]) < 1.0
    loss_bound = loss_tol("float32", scale)
    col_bound = loss_bound + (N // 32) * 2.0**-24  # the float32 adds down 2M rows (docstring)
    grad_bound = col_bound + ROUNDING["bfloat16"]

    def rel_to_max(got, want):
        return float((got.double() - want).abs().max() / want.abs().max())

    assert float((row.detach().double() - ref_row).abs().max()) <= loss_bound
    assert float((col_loss.detach().double() - ref_col).abs().max()) <= col_bound
    assert rel_to_max(a.grad[check], ref_da) <= grad_bound
    assert rel_to_max(b.grad, ref_db) <= grad_bound
