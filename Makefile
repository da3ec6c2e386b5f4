# Two commands on a fresh machine:  `make demo` (the main job) and `make test`.
# Both create or refresh .venv and install the project into it.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Without a GPU, pin the CPU build of torch that this workplace has on disk. With a GPU (nvidia-smi
# present) the normal install applies; add vLLM with `$(BIN)/pip install -e '.[vllm]'`.
TORCH_CPU ?= torch==2.13.0
PIP := $(BIN)/python -m pip

.PHONY: install demo test test-all lint format bench-lake clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q "$(TORCH_CPU)"; fi
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/swerl demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Every tier but gpu (slow tests included).
test-all: install
	$(BIN)/pytest -m "not gpu"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-lake: install
	$(BIN)/python benchmarks/lake.py

clean-venv:
	rm -rf $(VENV)
