"""`tools/gpu_check.sh --dry-run`: the GPU acceptance run rehearsed on the CPU, every step."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_step(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_check.sh"), "--dry-run", str(tmp_path)],
                         capture_output=True, text=True, timeout=1200, env=env)
    logs = {f: (tmp_path / f).read_text()[-2000:] for f in os.listdir(tmp_path) if f.endswith(".log")}
    assert out.returncode == 0, (out.stderr[-3000:], logs)
    res = json.loads((tmp_path / "gpu_results.json").read_text())
    assert res["passed"] and res["dry_run"]
    assert [s["step"] for s in res["steps"]] == ["build", "selftest", "tests", "static", "bench"]
    # the dry run's tests step: tests/gpu at tiny sizes in the interpreter, counted from its junit xml
    (run,) = res["tests"]
    assert run["run"] == "gpu" and run["passed"] > 0 and run["failed"] == run["errors"] == 0
    report = (tmp_path / "gpu_report.md").read_text()
    assert "Verdict: PASS" in report and "all checks passed" in report and "| cosine kNN" in report
    assert f"| gpu | {run['passed']} | 0 | 0 | {run['skipped']} |" in report
    assert list((tmp_path / "wheel").glob("vtalign-*.whl"))
