"""The Triton kernels compile for sm_80 and sm_90 with no GPU present exactly as their
launchers launch them: the configurations come from recording the launchers on small,
unaligned and above-2^31-element inputs (`vtalign.kernels._static`), every one compiles
for both archs, none spills, and the dot kernels use tensor-core instructions."""
import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

from vtalign.kernels.soft_dtw import BLOCKS

MODULES = ("contrastive", "knn", "overlap", "soft_dtw")


def _static(*args: str, timeout: int = 3000):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "vtalign.kernels._static", *args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        pytest.fail(f"static {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def listing():
    return _static("--list", timeout=600)


@pytest.fixture(scope="module")
def rows():
    return _static("--json")


def test_every_launched_kernel_is_recorded(listing):
    """Each module's @triton.jit entry points (`*_kernel`) appear in some recorded launch,
    so a kernel a launcher gains is compiled without anyone listing it."""
    seen = {(c["cases"][0].split(":")[0], c["fn"]) for c in listing}
    import vtalign.kernels

    names = [i.name for i in pkgutil.iter_modules(vtalign.kernels.__path__) if not i.name.startswith("_")]
    assert set(MODULES) <= set(names)
    for name in names:
        family = name.removesuffix("_kernels")  # FAMILY_kernels.py holds the jit code FAMILY.py launches
        src = importlib.util.find_spec(f"vtalign.kernels.{name}").origin
        text = open(src).read()
        kernels = [line.split("def ", 1)[1].split("(")[0] for line in text.splitlines()
                   if line.startswith("def _") and line.split("(")[0].endswith("_kernel")]
        assert kernels or f"{name}_kernels" in names, name
        for k in kernels:
            assert (family, k) in seen, f"{name}.{k} is never launched by a static case of {family}"


def test_specialisations_come_from_real_launches(listing):
    """The cases reach what a hand-written table missed: i64 strides above 2^31
    elements, constant-1 integers, unaligned pointers, every K_PAD and every BLOCK."""
    knn = [c for c in listing if c["fn"] == "_knn_kernel"]
    assert any("i64" in c["signature"].values() for c in knn)
    assert any(c["signature"].get("k") == "constexpr" for c in knn)
    assert {int(c["constexprs"]["K_PAD"]) for c in knn} == {2, 4, 8, 16, 32, 64, 128}
    assert {c["constexprs"]["PRECISION"] for c in knn if c["signature"]["Q"] == "*fp32"} == {"ieee", "tf32",
                                                                                            "tf32x3"}
    assert "ieee" in {c["constexprs"]["PRECISION"] for c in knn if c["signature"]["Q"] == "*fp16"}
    blocks = {int(c["constexprs"]["BLOCK"]) for c in listing if c["fn"].startswith("_soft_dtw")}
    assert blocks == set(BLOCKS)
    assert any(c["signature"].get("N") == "constexpr" for c in listing if c["fn"] == "_soft_dtw_fwd_kernel")


def test_grids_fit_cuda_limits():
    from vtalign.kernels._static import GRID_LIMITS

    grids = _static("--grids", timeout=600)
    assert any("large" in g["case"] for g in grids)
    for g in grids:
        assert len(g["grid"]) <= 3 and all(1 <= n <= lim for n, lim in zip(g["grid"], GRID_LIMITS)), g


def test_every_config_compiles_for_both_archs(rows, listing):
    archs = {}
    for r in rows:
        archs.setdefault(r["kernel"], set()).add(r["arch"])
    assert len(archs) == len(listing)
    for kernel, seen in archs.items():
        assert seen == {"sm_80", "sm_90"}, kernel


def test_no_spills(rows):
    spilled = [(r["kernel"], r["arch"], r["spill_bytes"]) for r in rows if r["spill_bytes"] or r["stack"]]
    assert not spilled, f"spilled bytes: {spilled}"


def test_dot_kernels_use_tensor_cores(rows):
    for r in rows:
        if r["expect_tensor_cores"]:
            assert r["tensor_core_ops"] != "-", f"{r['kernel']} on {r['arch']} has no MMA instruction"
    sm90_knn = [r for r in rows if r["kernel"].startswith("knn_kernel[") and r["arch"] == "sm_90"]
    assert sm90_knn and all(r["tensor_core_ops"] != "-" for r in sm90_knn if "ieee" not in r["kernel"]
                            or "fp32" not in r["kernel"])
