"""`vtalign selftest` on the CPU: every check runs, passes, and a wrong op is caught."""
import pytest
import torch

import vtalign
from vtalign.cli import main
from vtalign.selftest import markdown, run_selftest


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_selftest_passes_on_the_cpu(backend):
    checks, env = run_selftest("cpu", backend=backend, small=True)
    ops = {c.op for c in checks}
    assert {"cosine_knn", "knn_overlap", "contrastive_loss", "slot_contrastive_loss[max]", "soft_dtw",
            "soft_dtw_pairwise"} <= ops
    assert all(c.passed for c in checks), markdown(checks, env)
    assert env["torch"] == torch.__version__


def test_selftest_catches_a_wrong_op(monkeypatch):
    real = vtalign.soft_dtw
    monkeypatch.setattr(vtalign, "soft_dtw", lambda *a, **k: real(*a, **k) * 1.001)
    checks, _ = run_selftest("cpu", small=True)
    bad = [c for c in checks if not c.passed]
    assert bad and all(c.op == "soft_dtw" for c in bad)


def test_selftest_cli_exit_status_and_file(tmp_path, capsys):
    out = tmp_path / "selftest.md"
    assert main(["selftest", "--small", "--out", str(out)]) == 0
    text = out.read_text()
    assert "all checks passed" in text and "| cosine_knn |" in text


def test_selftest_without_cuda_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["selftest", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
