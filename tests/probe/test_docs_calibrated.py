"""docs/probe.md's calibrated-score example runs as written and prints what the page says."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_calibrated_scores_example_runs_as_written(tmp_path):
    with open(os.path.join(ROOT, "docs", "probe.md")) as f:
        text = f.read()
    section = text.split("## Calibrated scores for every metric", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    printed = re.findall(r"prints \(abridged\)\n\n```\n(.*?)```", section, re.S)[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for line in printed.strip().splitlines():
        assert line in out.stdout, line
    assert {"video.pt", "text.pt", "noise.pt"} <= set(os.listdir(tmp_path))
