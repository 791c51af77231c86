"""Static GPU readiness table: every Triton kernel configuration compiled for
sm_80 and sm_90 with no GPU present (registers, stack, shared memory, spills, MMA ops).

`python -m vtalign.benchmarks.run gpu_static`. The compile runs in a subprocess with
TRITON_INTERPRET unset, so the real @triton.jit kernels are compiled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def static_rows() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "vtalign.kernels._static", "--json"], env=env,
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout)


def format_rows(rows: list[dict]) -> str:
    import triton

    from vtalign.kernels._static import markdown_table

    spills = sum(r["spill_bytes"] for r in rows)
    return (f"Triton {triton.__version__}; {len(rows)} kernel configurations x arch; total spill bytes "
            f"(ptxas spill stores + loads + local): **{spills}**. `shared_dynamic` is the launch's dynamic "
            f"shared memory (bytes); `tensor_core_ops` lists the MMA instructions in the SASS.\n\n"
            + markdown_table(rows))


def run(size: str = "full", progress=None) -> str:
    return format_rows(static_rows())
