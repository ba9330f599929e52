# make test: create/use .venv, install everything, run the whole test suite with the coverage of the ops and kernels
# (CI's entry point).
# make demo: run the main job (aver-fast demo).   make bench: pytest benchmarks.
# make check-install: build the sdist and the wheel, install each into a fresh venv, check them from outside.
# make lint: ruff (rules and line length in pyproject.toml).
# make check-newest-torch: the test suite and the quick GPU gate against the newest torch and triton (CI).
# make check-gpu: compile every Triton kernel specialization for sm_80/86/87/89/90 (no GPU needed), table into
# benchmarks/RESULTS.md; make check-gpu-quick: the largest specialization of each kernel (CI).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.14.1
TORCHVISION ?= torchvision==0.29.1
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
export MAX_JOBS ?= 2
# what the compiled extension is built from: the install is redone only when one of these changes
EXT_SOURCES := $(wildcard csrc/*.cpp csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh) setup.py pyproject.toml

.PHONY: install test demo bench lint check-install check-newest-torch check-gpu check-gpu-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/python tools/deps.py test export int8 dev > $(VENV)/requirements.txt  # pyproject.toml's lists, not a copy
	$(BIN)/python -m pip install -q $(TORCH) $(TORCHVISION) -r $(VENV)/requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.deps $(EXT_SOURCES)
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.installed

# coverage of the ops and the Triton kernels (run in the interpreter here): the lines no test executed are listed
test: install
	$(BIN)/python -m pytest tests --cov=aver_fast/ops --cov=kernels --cov-report=term-missing:skip-covered

demo: install
	$(BIN)/aver-fast demo

bench: install
	$(BIN)/python -m pytest benchmarks

lint: $(VENV)/.deps
	$(BIN)/ruff check .

check-gpu: install
	$(BIN)/aver-fast check-gpu-build --out benchmarks/RESULTS.md

check-gpu-quick: install
	$(BIN)/aver-fast check-gpu-build --quick

check-install: install
	PYTHON=$(PYTHON) TORCH=$(TORCH) bash tools/check_install.sh

check-newest-torch:
	PYTHON=$(PYTHON) bash tools/check_newest_torch.sh

clean:
	rm -rf build dist aver_fast/_C*.so aver_fast/_C_build.json *.egg-info $(VENV)/.installed .venv-newest
