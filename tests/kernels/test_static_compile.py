"""Every Triton kernel configuration compiles for sm_80 and sm_90 with no GPU
present, spills nothing, and the dot kernels use tensor-core instructions."""
import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def rows():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "vtalign.kernels._static", "--json"], env=env,
                         capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        pytest.fail(f"static compile failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout)


def test_every_config_compiles_for_both_archs(rows):
    archs = {}
    for r in rows:
        archs.setdefault(r["kernel"], set()).add(r["arch"])
    assert archs, "no kernel configurations discovered"
    for kernel, seen in archs.items():
        assert seen == {"sm_80", "sm_90"}, kernel


def test_no_spills(rows):
    spilled = [(r["kernel"], r["arch"], r["spill_bytes"]) for r in rows if r["spill_bytes"] or r["stack"]]
    assert not spilled, f"spilled bytes: {spilled}"


def test_dot_kernels_use_tensor_cores(rows):
    for r in rows:
        if r["expect_tensor_cores"]:
            assert r["tensor_core_ops"] != "-", f"{r['kernel']} on {r['arch']} has no MMA instruction"
    sm90_knn = [r for r in rows if r["kernel"].startswith("knn[") and r["arch"] == "sm_90"]
    assert sm90_knn and all(r["tensor_core_ops"] != "-" for r in sm90_knn)
