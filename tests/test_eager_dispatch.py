"""Eager calls of the ops skip the custom-op dispatch (vtalign.ops._common.eager_op): its
first call imports torch._dynamo, 1.4 s of a `vtalign demo` run on the development VM."""
import subprocess
import sys

import pytest

from vtalign.ops._common import has_cpp

SCRIPT = """
import sys, torch, vtalign
x = torch.randn(3, 40, 8)
v, i = vtalign.cosine_knn(x, 5)
vtalign.knn_overlap(i, i)
a = torch.randn(16, 12, 4, requires_grad=True)
vtalign.soft_dtw(a, torch.randn(16, 9, 4), backend="cpp").sum().backward()
print("torch._dynamo" in sys.modules)
"""


@pytest.mark.skipif(not has_cpp(), reason="needs the C++ extension")
def test_eager_calls_do_not_import_dynamo():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
