# rhode: two-command set-up.  `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use with a Python 3.10 interpreter (the OpenFHE wheel loads only there).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

PY310 ?= $(shell for c in "$$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python "$$HOME"/.pyenv/versions/3.10*/bin/python python3.10 python3; do \
	if command -v "$$c" >/dev/null 2>&1 && "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then echo "$$c"; break; fi; done)

.PHONY: venv demo test bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PY310)" ]; then \
		echo "error: Python 3.10 not found. OpenFHE's wheel (openfhe==1.6.1.0.22.4) loads only on 3.10."; \
		echo "Install one (e.g. 'pyenv install 3.10.13') or run 'make PY310=/path/to/python3.10 ...'."; \
		exit 1; fi
	@test -x $(PY) || "$(PY310)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,flower]"
	@$(PY) -c "import openfhe" || { echo "error: 'import openfhe' failed in $(VENV); it needs CPython 3.10 on glibc >= 2.36."; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo  # the demo starts afresh each time (rhode refuses to overwrite a run)
	$(VENV)/bin/rhode demo --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest -q tests

# Regenerates every figure under docs/ (tens of minutes on 2 cores; run on a quiet machine).
BENCHES := mhe_ops deserialized_ops approximations accuracy packing training scaling federations
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,flower,bench]"  # bench/federations.py reads series from these
	@for b in $(BENCHES); do if [ -f bench/$$b.py ]; then echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; fi; done
	@echo "== bench/deployment.py"; d=$$(mktemp -d) && $(PY) bench/deployment.py --root $$d --json docs/benchmarks/deployment.json && rm -rf $$d

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
