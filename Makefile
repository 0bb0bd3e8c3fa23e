# Two commands for a fresh machine (see README):
#   make demo   set up .venv, build the extension, run the main job
#   make test   set up .venv, build the extension, run the tests
# Both build the same way: torch first, then `pip install --no-build-isolation -e .` so the extension
# compiles against that torch (no second torch is downloaded into an isolated build environment).

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The CPU build of torch (on this project's machines it lies on local disk). A GPU user sets e.g.
# TORCH_SPEC="torch==2.14.1" to get a CUDA build; with nvcc present the CUDA kernels are built too.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

DEPS_STAMP  := $(VENV)/.dpst-deps
BUILD_STAMP := $(VENV)/.dpst-built
CSRC        := $(shell find csrc -type f 2>/dev/null)

.PHONY: install demo test bench clean

$(DEPS_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" ninja pybind11 "setuptools>=64" wheel
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) setup.py $(CSRC)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test]"
	touch $@

install: $(BUILD_STAMP)

demo: install
	$(PY) -m dpst_ext.demo

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: install
	$(PY) -m pytest benchmarks --benchmark-only $(PYTEST_ARGS)

clean:
	rm -rf build dpst_ext/*.so $(VENV)
