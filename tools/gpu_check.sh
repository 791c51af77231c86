#!/usr/bin/env bash
# The GPU acceptance run, in one command:
#
#   tools/gpu_check.sh OUT             on a machine with a CUDA GPU
#   tools/gpu_check.sh --dry-run OUT   the same steps on the CPU, to rehearse it
#
# Made for a machine with python, torch, triton, pybind11, scikit-build-core and
# pytest already installed and no network: it builds vtalign from this checkout
# (no downloads), then
#   1. build      pip wheel of this checkout, installed without dependencies
#   2. selftest   `vtalign selftest` on the GPU: every op against the float64 reference
#   3. static     every Triton kernel configuration compiled for sm_80 and sm_90 (spills)
#   4. bench      `python -m vtalign.benchmarks.gpu_quick`: each op against plain torch
# and writes OUT/gpu_report.md and OUT/gpu_results.json (plus each step's log).
# The exit status is 0 only when every step passed. On the lent H100 it is sized to
# finish in about 5 minutes. --dry-run builds the wheel without installing it, runs the
# selftest on the CPU (C++ backend, then the Triton kernels in the interpreter on small
# shapes), the static compile, and the benchmark on tiny CPU shapes.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:?usage: tools/gpu_check.sh [--dry-run] OUT}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"

: > "$OUT/steps.tsv"
status=0
step() {  # step NAME CMD...: run, log to OUT/NAME.log, record pass/fail and seconds
  local name=$1; shift
  local t0=$SECONDS
  echo "[gpu_check] $name ..." >&2
  if "$@" > "$OUT/$name.log" 2>&1; then r=pass; else r=FAIL; status=1; fi
  printf '%s\t%s\t%s\n' "$name" "$r" "$((SECONDS - t0))" >> "$OUT/steps.tsv"
  echo "[gpu_check] $name: $r ($((SECONDS - t0)) s)" >&2
}

build() {
  rm -rf "$OUT/wheel"
  "$PY" -m pip wheel --no-build-isolation --no-deps --no-index -w "$OUT/wheel" . || return 1
  if [[ $DRY == 0 ]]; then
    "$PY" -m pip install --no-deps --no-index --force-reinstall "$OUT"/wheel/vtalign-*.whl || return 1
  fi
}

selftest() {
  if [[ $DRY == 1 ]]; then
    "$PY" -m vtalign.cli selftest --device cpu --small --out "$OUT/selftest.md" &&
      TRITON_INTERPRET=1 "$PY" -m vtalign.cli selftest --device cpu --backend triton --small \
        --out "$OUT/selftest_triton_interpreter.md"
  else
    "$PY" -m vtalign.cli selftest --device cuda --out "$OUT/selftest.md"
  fi
}

static() {
  env -u TRITON_INTERPRET "$PY" -m vtalign.kernels._static --json > "$OUT/static.json" &&
    "$PY" - "$OUT/static.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
bad = [r["kernel"] + "@" + r["arch"] for r in rows if r["spill_bytes"] or
       (r["expect_tensor_cores"] and r["tensor_core_ops"] == "-")]
print(f"{len(rows)} compiled configurations; spills or missing tensor cores: {bad or 'none'}")
sys.exit(1 if bad else 0)
EOF
}

bench() {
  if [[ $DRY == 1 ]]; then
    "$PY" -m vtalign.benchmarks.gpu_quick --device cpu --size tiny --out "$OUT"
  else
    "$PY" -m vtalign.benchmarks.gpu_quick --device cuda --size small --out "$OUT"
  fi
}

step build build
step selftest selftest
step static static
step bench bench

"$PY" - "$OUT" "$DRY" <<'EOF'
import json, os, platform, sys
out, dry = sys.argv[1], sys.argv[2] == "1"
steps = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "steps.tsv"))]
env = {"python": platform.python_version()}
try:
    import torch
    env["torch"] = torch.__version__
    env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
except Exception as e:  # the report is still written when torch itself is broken
    env["torch"] = f"failed to import: {e}"
try:
    import triton
    env["triton"] = triton.__version__
except Exception as e:
    env["triton"] = f"failed to import: {e}"
def read(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else "(not written)\n"
res = dict(dry_run=dry, env=env, steps=[dict(step=s, result=r, seconds=int(t)) for s, r, t in steps],
           passed=all(r == "pass" for _, r, _ in steps))
md = ["# vtalign GPU check" + (" (dry run on the CPU)" if dry else ""), "",
      ", ".join(f"{k} {v}" for k, v in env.items()), "",
      "| step | result | seconds |", "|---|---|---|",
      *[f"| {s} | {r} | {t} |" for s, r, t in steps], "",
      "## selftest", "", read("selftest.md"),
      "## bench", "", read("gpu_bench.md"),
      "## static compile", "", read("static.log"),
      f"Verdict: {'PASS' if res['passed'] else 'FAIL'}", ""]
for name, text in (("gpu_results.json", json.dumps(res, indent=1) + "\n"), ("gpu_report.md", "\n".join(md))):
    with open(os.path.join(out, name + ".tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
print("\n".join(md))
EOF
exit $status
