"""Compile Triton kernels for NVIDIA GPUs with no GPU present (DESIGN.md §4).

`triton.compile` with an explicit `GPUTarget` builds PTX and a cubin on any
machine; the `cuobjdump` shipped in the triton wheel then reports registers,
shared memory and LOCAL (spill) bytes, and the SASS tells whether dots became
tensor-core instructions. Every kernel module lists the configurations its
launcher can pick in `static_configs()`; `discover()` collects them.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import tempfile
from dataclasses import dataclass, field

ARCHS = (80, 90)
_TC_OPS = re.compile(r"\b(HMMA|HGMMA|IMMA|IGMMA|DMMA|QGMMA|UTCHMMA|UTCQMMA)\b")


@dataclass
class StaticConfig:
    """One launch configuration: runtime argument types plus constexpr values."""

    name: str
    fn: object
    arg_types: dict
    constexprs: dict
    num_warps: int = 4
    num_stages: int = 2
    expect_tensor_cores: bool = False
    labels: dict = field(default_factory=dict)

    def signature(self) -> dict:
        names = self.fn.arg_names
        missing = [n for n in names if n not in self.arg_types and n not in self.constexprs]
        if missing:
            raise ValueError(f"{self.name}: no type or constexpr for {missing}")
        return {n: ("constexpr" if n in self.constexprs else self.arg_types[n]) for n in names}


def _bin_dir() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def _compile_logged(src, arch: int, options: dict):
    """triton.compile with its own ptxas log captured: (compiled, log). The log states
    spill stores and loads for exactly the ptxas binary and options Triton used (they
    vary by version: an sm_90 PTX from triton 3.9 needs its newer ptxas, and 3.7+ pass
    --regAllocOptLevel=2), which re-running the wheel's `bin/ptxas` would not."""
    import contextlib
    import io

    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget

    out = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(out):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a cache hit would run no ptxas, so log nothing
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled, out.getvalue()


def compile_config(cfg: StaticConfig, arch: int) -> dict:
    """Compile `cfg` for sm_`arch`; return registers, shared and spill bytes, tensor-core use."""
    from triton.compiler import ASTSource

    src = ASTSource(fn=cfg.fn, signature=cfg.signature(), constexprs=dict(cfg.constexprs))
    compiled, log = _compile_logged(src, arch, dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        tool = os.path.join(_bin_dir(), "cuobjdump")
        usage = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([tool, "-sass", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    # ptxas -v states spill stores/loads explicitly; cuobjdump's LOCAL does not count
    # spills that live in the stack frame
    sp = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if m is None or sp is None:
        raise RuntimeError(f"could not read resource usage of {cfg.name}:\n{usage}\n{log}")
    tc = sorted(set(_TC_OPS.findall(sass)))
    return dict(kernel=cfg.name, arch=f"sm_{arch}", registers=int(m.group(1)), stack=int(m.group(2)),
                shared_static=int(m.group(3)), shared_dynamic=int(compiled.metadata.shared),
                spill_bytes=int(sp.group(1)) + int(sp.group(2)) + int(m.group(4)), tensor_core_ops=",".join(tc) or "-",
                num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                expect_tensor_cores=cfg.expect_tensor_cores)


def discover() -> list[StaticConfig]:
    """Every configuration declared by a kernel module's `static_configs()`."""
    import vtalign.kernels as pkg

    out: list[StaticConfig] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "static_configs"):
            out.extend(mod.static_configs())
    return out


def markdown_table(rows: list[dict]) -> str:
    cols = ["kernel", "arch", "registers", "stack", "shared_static", "shared_dynamic", "spill_bytes",
            "tensor_core_ops", "num_warps", "num_stages"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _compile_one(job):
    cfg_index, arch = job
    return compile_config(discover()[cfg_index], arch)


def compile_all(archs=ARCHS, workers: int | None = None) -> list[dict]:
    """Compile every discovered configuration for every arch (a process per core)."""
    from concurrent.futures import ProcessPoolExecutor

    n = len(discover())
    jobs = [(i, a) for i in range(n) for a in archs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_compile_one(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_compile_one, jobs))


if __name__ == "__main__":  # python -m vtalign.kernels._static [--json]
    import json
    import sys

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("unset TRITON_INTERPRET: the static compile needs real @triton.jit kernels")
    rows = compile_all()
    print(json.dumps(rows) if "--json" in sys.argv else markdown_table(rows))
