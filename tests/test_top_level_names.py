"""The repository's top-level folders must not shadow installed distributions.

`kernels/` and `benchmarks/` sit at the repository root, which pytest and
`python -m ...` put first on sys.path. As namespace-package portions (no
`__init__.py`) they lose to any regular package of the same name further down
sys.path, while `vtalign.kernels` and `vtalign.benchmarks` keep resolving.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["kernels", "benchmarks"])
def test_installed_distribution_wins_over_root_folder(tmp_path, name):
    # a throw-away distribution with the same top-level name, on sys.path after the root
    pkg = tmp_path / "site" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("THROWAWAY = 'the installed one'\n")
    code = textwrap.dedent(f"""
        import sys
        assert sys.path[0] in ("", {ROOT!r}), sys.path[:2]
        import {name}
        print({name}.THROWAWAY)
        print({name}.__file__)
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "the installed one"
    assert lines[1].startswith(str(tmp_path))


def test_root_folders_are_namespace_portions():
    for name in ("kernels", "benchmarks"):
        assert not os.path.exists(os.path.join(ROOT, name, "__init__.py")), \
            f"{name}/__init__.py would make the folder shadow a distribution named {name!r}"


def test_vtalign_subpackages_resolve_from_root_and_elsewhere(tmp_path):
    code = ("import vtalign.kernels.knn as k, vtalign.benchmarks.report as r; "
            "print(k.__file__); print(r.__file__)")
    for cwd in (ROOT, str(tmp_path)):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        knn_file, report_file = out.stdout.splitlines()
        assert knn_file.endswith(os.path.join("kernels", "knn.py"))
        assert report_file.endswith("report.py")


def test_vtalign_bench_runs_from_any_folder(tmp_path):
    """The suites ship in the package: a run from outside the checkout writes where --out says."""
    out = tmp_path / "X"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-m", "vtalign.cli", "bench", "--size", "small", "--suites", "metrics",
                          "--no-static", "--max-wait", "0", "--out", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    res = json.loads((out / "results.json").read_text())
    assert {r["suite"] for r in res["rows"]} == {"metrics"} and res["speedups"]
    assert all(len(r["times"]) >= 3 for r in res["rows"])  # rounds of fresh processes
    assert (out / "report.md").read_text().startswith("# vtalign bench (small)")
