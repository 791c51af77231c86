"""What the soft-DTW kernel tests share: a forward+backward runner on the Triton
device, the bit-identity check between kernel paths, and the compiled-PTX probe."""
import os
import subprocess
import sys

import torch

from tests._device import ON_CUDA, TRITON_DEVICE
from vtalign.kernels.soft_dtw import soft_dtw_backward, soft_dtw_forward


def run(C, gamma, xl, yl, bandwidth=-1, **kw):
    """Forward and backward on TRITON_DEVICE -> (values, E) on the CPU."""
    B = C.shape[0]
    g = torch.as_tensor(gamma, dtype=torch.float32).expand(B).contiguous()
    C, g, xl, yl = (t.to(TRITON_DEVICE) for t in (C, g, torch.tensor(xl, dtype=torch.int32),
                                                    torch.tensor(yl, dtype=torch.int32)))
    v, state = soft_dtw_forward(C, g, xl, yl, bandwidth, **kw)
    E = soft_dtw_backward(C, state, g, xl, yl, bandwidth, **kw)
    return v.cpu(), E.cpu()


def same(a, b):
    """Bit-identical in the interpreter (one numpy op per Triton op, in the same order);
    on a GPU the compiler may contract the two kernels' arithmetic differently."""
    if not ON_CUDA:
        assert torch.equal(a, b), (a - b).abs().max()
    else:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


_PTX_PROBE = """
import re, sys, triton
from vtalign.kernels import _static
seen = set()
for cfg in _static.discover(only="soft_dtw"):
    if any(c.startswith(sys.argv[1]) for c in cfg.cases) and cfg.launch.fn.__name__ not in seen:
        seen.add(cfg.launch.fn.__name__)
        src, options = _static.specialize(cfg.launch, 90)
        ptx = triton.compile(src, target=_static._target(90), options=options.__dict__).asm["ptx"]
        print(cfg.launch.fn.__name__, len(re.findall(r"\\bbar\\.sync\\b|\\bbarrier\\.sync\\b", ptx)),
              ptx.count("ld.global.nc"))
"""


def compiled_barriers(case: str) -> dict[str, tuple[int, int]]:
    """{kernel: (bar.sync count, ld.global.nc count)} in the sm_90 PTX of the first
    specialisation of each kernel that a static case starting with `case` launches."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _PTX_PROBE, case], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: (int(bars), int(nc)) for name, bars, nc in (ln.split() for ln in out.stdout.splitlines())}
