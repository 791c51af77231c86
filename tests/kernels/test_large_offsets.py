"""Element offsets past 2^31 inside a kernel: rows far apart in one buffer.

A Python int below 2^31 reaches a kernel as i32 and `tl.arange` / `program_id` are
i32, so `rows * stride` wraps once it reaches 2^31 (kNN at M·D >= 2^31: D = 1024 at
2.1M rows; the contrastive kernels at B·D >= 2^31). The interpreter computes i32
arithmetic as the GPU does, so three rows placed 2^30 elements apart in one 8 GiB
buffer reproduce the wrap without 8 GiB of data: the buffer is reserved, never
touched (only the rows are written), and the interpreter's copy-back of a CPU storage
onto itself is skipped. Each case runs in a subprocess, so a wrapped read that lands
outside the buffer fails one test, not the session.
"""
import os
import subprocess
import sys
import textwrap

import pytest

HEADER = textwrap.dedent("""
    import os
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    _copy = torch.UntypedStorage.copy_

    def _copy_unless_same(self, src, non_blocking=False):
        # the interpreter copies each CPU storage back onto itself after a launch; on an
        # 8 GiB reservation that would touch every page
        if self.data_ptr() == src.data_ptr():
            return self
        return _copy(self, src, non_blocking)

    torch.UntypedStorage.copy_ = _copy_unless_same
    D = 32
    STRIDE = 2 ** 30  # rows 0, 1, 2 start at elements 0, 2^30, 2^31: the last one wraps in i32
    big = torch.empty(2 * STRIDE + 4 * D, dtype=torch.float32)

    def strided_rows(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=-1)
        view = big.as_strided((n, D), (STRIDE, 1))
        view.copy_(x)
        return view, x
""")


def _run(body: str) -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", HEADER + textwrap.dedent(body)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"


@pytest.mark.skipif(sys.platform != "linux", reason="reserves 8 GiB of address space (Linux overcommit)")
def test_knn_rows_past_two_to_the_31():
    _run("""
        from vtalign.kernels.knn import knn
        from vtalign.reference.knn import knn as ref_knn
        view, x = strided_rows(3, 0)
        v, i = knn(view[None], view[None], 2, self_shift=0, precision="ieee")
        rv, ri = ref_knn(x[None].double(), x[None].double(), 2, normalize=False, self_shift=0)
        assert torch.equal(i, ri), (i, ri)
        assert torch.allclose(v.double(), rv, atol=1e-6), (v, rv)
    """)


@pytest.mark.skipif(sys.platform != "linux", reason="reserves 8 GiB of address space (Linux overcommit)")
def test_contrastive_rows_past_two_to_the_31():
    _run("""
        from vtalign.kernels.contrastive import infonce_forward, infonce_backward
        a_view, a = strided_rows(3, 1)
        b = torch.nn.functional.normalize(torch.randn(3, D, generator=torch.Generator().manual_seed(2)), dim=-1)
        scale = torch.tensor(5.0)
        rl, cl, rs, cs = infonce_forward(a_view, b, scale, None, 0, True, True, precision="ieee")
        a64 = a.double().requires_grad_()
        s = 5.0 * a64 @ b.double().T
        row = torch.logsumexp(s, 1) - s.diagonal()
        col = torch.logsumexp(s, 0) - s.diagonal()
        assert torch.allclose(rl.double(), row.detach(), atol=1e-5), (rl, row)
        assert torch.allclose(cl.double(), col.detach(), atol=1e-5), (cl, col)
        (0.5 * row.sum() + 0.5 * col.sum()).backward()
        g = torch.full((3,), 0.5)
        da, db, ds = infonce_backward(a_view, b, scale, None, 0, True, True, rs, cs, g, g, precision="ieee")
        assert torch.allclose(da.double(), a64.grad, atol=1e-5), (da, a64.grad)
    """)
