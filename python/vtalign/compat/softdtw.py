"""pytorch-softdtw-cuda (Maghoumi, github.com/Maghoumi/pytorch-softdtw-cuda) with vtalign's kernels.

Replace `from soft_dtw_cuda import SoftDTW` with
`from vtalign.compat.softdtw import SoftDTW`; the constructor
`SoftDTW(use_cuda, gamma=1.0, normalize=False, bandwidth=None, dist_func=None)`
and the call `sdtw(X [B, N, D], Y [B, M, D]) -> [B]` are unchanged, and so is
every value upstream computes correctly. Documented differences, where upstream
is wrong or limited: no 1024-length cap (upstream silently falls back to its
CPU loop), a band on unequal lengths follows the diagonal from (1, 1) to (N, M)
so the value is finite (upstream's |i - j| rule returns inf, its issues #8/#18),
`normalize=True` accepts N != M, and no B x N x M x D tensor is built for the
default squared-Euclidean distance. `use_cuda` is accepted; the device of the
inputs decides (CUDA tensors run the Triton kernels).
"""
from vtalign.nn.soft_dtw import SoftDTW

__all__ = ["SoftDTW"]
