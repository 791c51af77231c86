#!/usr/bin/env bash
# Refresh requirements/constraints.txt, the lock that `make demo` / `make test`
# install from (called by `make lock`).
#
# In a throw-away venv (a temp dir, never .venv) it installs what the Makefile's
# set-up installs and the benchmark peers (the bench extra), but WITHOUT the
# lock, so everything not pinned below floats
# to its newest release; it builds vtalign editable, runs the whole test suite
# from the repository root, and only when every test passes rewrites the lock
# from that venv's `pip freeze --all` (vtalign itself and pip left out, the
# lock's leading comment block kept). On failure the old lock stays, the
# failed tests are listed and the exit status is non-zero.
#
# Environment: PYTHON (default python3) is the interpreter the venv is made
# from; it should be the one the lock is meant for (CPython 3.11 today).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
LOCK=requirements/constraints.txt

# Same specs as the Makefile's set-up; torch is named exactly so pip takes the
# CPU wheel from the local find-links and never a CUDA build.
TORCH_SPEC="torch==2.13.0"
TOOL_SPECS=("triton==3.7.1" "scikit-build-core>=0.10" "pybind11>=2.12" "ninja")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vtalign-lock.XXXXXX")
NEW_LOCK="$LOCK.new.$$"   # next to the lock so the final mv is a rename on one filesystem
cleanup() { rm -rf "$WORK"; rm -f "$NEW_LOCK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }

say "fresh venv in $WORK/venv ($("$PYTHON" --version 2>&1))"
"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

say "installing the newest releases (no lock)"
"${PIP[@]}" install "$TORCH_SPEC"
"${PIP[@]}" install "${TOOL_SPECS[@]}"
# Own build dir, so the repository's build/ (used by .venv) is left alone.
"${PIP[@]}" install --no-build-isolation -C "build-dir=$WORK/build" -e ".[dev,bench]"

# pip freeze --all: setuptools is pulled in by torch and must be pinned too;
# pip itself comes with the interpreter's venv, not from the set-up.
"${PIP[@]}" freeze --all \
  | grep -v -E '^(-e |#)' \
  | grep -v -i -E '^(pip|vtalign)([=@ ]|$)' > "$WORK/freeze.txt"

say "versions that differ from $LOCK (- old, + new)"
if [[ -f "$LOCK" ]]; then
  changes=$(diff <(grep -v -E '^[[:space:]]*(#|$)' "$LOCK") "$WORK/freeze.txt" \
              | sed -n -e 's/^< /- /p' -e 's/^> /+ /p' || true)
  echo "${changes:-(none)}"
else
  echo "(no lock yet)"
fi

say "running the test suite: $PY -m pytest"
set +e
"$PY" -m pytest -rfE 2>&1 | tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
  say "tests FAILED (pytest exit $status); $LOCK is unchanged. Failed tests:"
  grep -E '^(FAILED|ERROR) ' "$WORK/pytest.log" || tail -n 20 "$WORK/pytest.log"
  exit 1
fi

# The lock must hold plain `name==version` lines only (pip refuses URL
# constraints) and no CUDA packages.
if bad=$(grep -v -E '^[A-Za-z0-9][A-Za-z0-9._-]*==[^[:space:]]+$' "$WORK/freeze.txt"); then
  say "refusing to write $LOCK: lines that are not name==version:"; echo "$bad"; exit 1
fi
if bad=$(grep -i -E '^(nvidia-[^=]*|[^=]*cuda[^=]*)==' "$WORK/freeze.txt"); then
  say "refusing to write $LOCK: CUDA packages were installed:"; echo "$bad"; exit 1
fi
grep -q -E '^torch==2\.13\.0(\+cpu)?$' "$WORK/freeze.txt" \
  || { say "refusing to write $LOCK: torch is not the 2.13.0 CPU build"; grep -i '^torch==' "$WORK/freeze.txt"; exit 1; }

mkdir -p "$(dirname "$LOCK")"
{
  if [[ -f "$LOCK" ]] && grep -q '^#' "$LOCK"; then
    awk '/^[[:space:]]*(#|$)/ { print; next } { exit }' "$LOCK"
  else
    printf '%s\n' \
      "# Lock of every package \`make demo\` / \`make test\` install into .venv." \
      "# Refresh with \`make lock\` (tools/refresh_lock.sh); commit it when the tests pass." \
      ""
  fi
  cat "$WORK/freeze.txt"
} > "$NEW_LOCK"
mv -f "$NEW_LOCK" "$LOCK"
say "tests passed; wrote $LOCK ($(wc -l < "$WORK/freeze.txt") packages). Review with git diff, then commit it."
