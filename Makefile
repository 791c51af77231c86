# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv, install torch 2.13.0 (CPU build from this disk) when no
# torch is present, install vtalign editable with its dev extras, then run.
# Every set-up install is pinned (pip -c) to the tested versions in
# requirements/constraints.txt; `make lock` refreshes that lock against the
# newest releases and the test suite (tools/refresh_lock.sh).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.vtalign-installed
LOCK   := requirements/constraints.txt
DEPS   := pyproject.toml CMakeLists.txt Makefile $(LOCK) $(wildcard csrc/*.cpp csrc/*.h)

.PHONY: setup demo demo-real test bench clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) $(DEPS)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -c $(LOCK) "torch==2.13.0"
	$(PIP) install -c $(LOCK) "triton==3.7.1" "scikit-build-core>=0.10" "pybind11>=2.12" ninja
	$(PIP) install -c $(LOCK) --no-build-isolation -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/vtalign demo

# the raw-video path offline: generated MP4s -> extract video / text -> sweep -> fit (under a minute on 2 cores)
demo-real: setup
	$(VENV)/bin/vtalign demo --real

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

# the published numbers: every suite, one run, refused while the machine is busy
bench: setup
	$(PIP) install -q -c $(LOCK) faiss-cpu tslearn pysdtw calibrated-similarity
	$(VENV)/bin/vtalign bench --size full --out benchmarks/results --refuse-busy
	$(PY) -m vtalign.benchmarks.readme benchmarks/results/results.json README.md

lock:
	PYTHON=$(PYTHON) bash tools/refresh_lock.sh

clean:
	rm -rf build $(VENV) runs bench
