"""Static GPU check (docs/design.md §4) across triton releases, no GPU needed.

    python tools/static_triton_versions.py [--only MODULE] [VERSION ...]
                                                  # default: 3.6.0 3.7.1 3.8.0 3.9.0

Each release is installed once with `pip install --no-deps --target` into
~/.cache/vtalign/triton-VERSION (from the package registry) and put in front of the
environment's own triton with PYTHONPATH; `python -m vtalign.kernels._static --json`
then compiles every kernel configuration for sm_80 and sm_90 with it. Prints, per
release, the number of configurations, the total spill bytes (from the ptxas log of
Triton's own compile) and the most registers any configuration uses; exits 1 on a
compile error or a spill.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

DEFAULT = ("3.6.0", "3.7.1", "3.8.0", "3.9.0")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "vtalign")


def install(version: str) -> str:
    target = os.path.join(CACHE, f"triton-{version}")
    if not os.path.isdir(os.path.join(target, "triton")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target,
                        f"triton=={version}"], check=True)
    return target


def check(version: str, only: str | None = None) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = install(version) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # 3.9 warns unless it is set; 1 is every release's default
    extra = ["--only", only] if only else []
    out = subprocess.run([sys.executable, "-m", "vtalign.kernels._static", "--json", *extra], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        return False, f"triton {version}: compile failed: {out.stderr.strip().splitlines()[-1:]}"
    rows = json.loads(out.stdout)
    spills = [(r["kernel"], r["arch"], r["spill_bytes"]) for r in rows if r["spill_bytes"]]
    line = (f"triton {version}: {len(rows)} configurations, spill bytes {sum(s for *_, s in spills)}"
            f"{' ' + str(spills) if spills else ''}, max registers {max(r['registers'] for r in rows)}")
    return not spills, line


def main(argv: list[str]) -> int:
    only = None
    if argv[:1] == ["--only"]:
        only, argv = argv[1], argv[2:]
    ok = True
    for v in argv or DEFAULT:
        good, line = check(v, only)
        ok &= good
        print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
