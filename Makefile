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
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test,demo,batch,video]"
	touch $@

install: $(BUILD_STAMP)

demo: install
	$(PY) -m dpst_ext.demo

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Benchmarks against pymatting and scipy (~5 min); writes benchmarks/RESULTS.md and scaling.png.
bench: install
	$(PY) benchmarks/report.py

clean:
	rm -rf build dpst_ext/*.so $(VENV)

# ---- CUDA kernels without a GPU --------------------------------------------------------------------
# sanitize: the emulated CUDA kernels (csrc/cuda/, -DDPST_EMULATE_CUDA) in a torch-free driver
# (tests/native/kernels_check.cpp) under ThreadSanitizer, then AddressSanitizer + UBSan; must be clean.
# cuda-check: nvcc -Xptxas -v for sm_75/80/86/90 (fails on spills or local memory), then a full build
# of the extension against a CUDA torch in its own venv, import, registration and SASS listing.
NATIVE_DEPS  := tests/native/kernels_check.cpp $(wildcard csrc/*.h csrc/cuda/*.cuh)
NATIVE_FLAGS := -std=c++20 -O1 -g -fno-omit-frame-pointer -DDPST_EMULATE_CUDA -Icsrc -pthread

.PHONY: sanitize cuda-check

build/native/kernels_check_tsan: $(NATIVE_DEPS)
	mkdir -p $(@D)
	$(CXX) $(NATIVE_FLAGS) -fsanitize=thread $< -o $@

build/native/kernels_check_asan: $(NATIVE_DEPS)
	mkdir -p $(@D)
	$(CXX) $(NATIVE_FLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all $< -o $@

sanitize: build/native/kernels_check_tsan build/native/kernels_check_asan
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/native/kernels_check_tsan
	ASAN_OPTIONS="detect_leaks=1 halt_on_error=1" ./build/native/kernels_check_asan

cuda-check:
	bash tools/cuda_check.sh
