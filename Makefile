# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pip's numpy bundles its BLAS under a private name PyTensor cannot link, so PyTensor would
# warn about "no BLAS" in every report; say so once here (empty ldflags is what it falls
# back to anyway). The lab's samplers run compiled by numba/nutpie, not PyTensor's C code.
# Set PYTENSOR_FLAGS yourself to link a system BLAS.
export PYTENSOR_FLAGS ?= compiledir=$(CURDIR)/.pytensor,blas__ldflags=
# one BLAS thread per process: parallelism comes from processes, and threaded BLAS inside
# small optimizations made REML fits 5-10x slower on 2 cores
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test lint bench bench-bayes clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fitlab demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run.py

# simulation-based calibration of every Bayesian model (500 replicates each, own and wrong
# prior) and the cost of the binary and CACE models against MixedLM
bench-bayes: $(STAMP)
	$(PY) benchmarks/sbc.py --wrong
	$(PY) benchmarks/bayes_speed.py

clean:
	rm -rf $(VENV) .pytensor outputs/*
