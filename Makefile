# make test: create/use .venv, install everything, run the whole test suite.
# make demo: run the main job (aver-fast demo).   make bench: pytest benchmarks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.14.1
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
export MAX_JOBS ?= 2

.PHONY: install test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH) numpy soundfile decord av pillow safetensors tqdm matplotlib pybind11 ninja \
	    pytest pytest-benchmark hypothesis torchvision==0.29.1
	touch $@

install: $(VENV)/.deps
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .

test: install
	$(BIN)/python -m pytest tests

demo: install
	$(BIN)/aver-fast demo

bench: install
	$(BIN)/python -m pytest benchmarks

clean:
	rm -rf build aver_fast/_C*.so *.egg-info
