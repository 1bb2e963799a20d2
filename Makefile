# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs
# into .venv first. TORCH is a variable so a CPU-only machine can pin a local wheel
# (CI: TORCH=torch==2.13.0) while a user gets the default build for their platform.
PYTHON ?= python3
TORCH ?= torch
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install test demo demo-quick lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/mixsampler demo $(DEMO_ARGS)

demo-quick: install
	$(BIN)/mixsampler demo --quick $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mixsampler callbacks laws tests benchmarks

clean:
	rm -rf $(VENV) demo_out *.egg-info
