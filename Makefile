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

# The suite, then every docstring example (the root conftest.py imports laws/ and callbacks/
# as mixsampler.laws and mixsampler.callbacks, the names they install under).
# `make test PYTEST_ARGS='-m "not slow"'` is the fast loop.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q --doctest-modules mixsampler callbacks laws

# The demo lives outside the installed package and uses only its public API.
demo: install
	$(BIN)/python examples/mixture_demo/run.py $(DEMO_ARGS)

demo-quick: install
	$(BIN)/python examples/mixture_demo/run.py --quick $(DEMO_ARGS)

# Style, formatting, no private name imported across modules, and the types (mypy on the
# package as it installs, through tools/typecheck.py).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mixsampler callbacks laws tests benchmarks examples tools conftest.py
	$(BIN)/python tools/check_private_imports.py
	$(BIN)/python tools/typecheck.py

# The fast benchmarks that need no public run table (each under 10 s on an idle 2-core
# machine; reports in bench_out/): the drop-in hooks' cost and the sampler against its peers
# at smoke-test sizes. The rest take the tables' paths or run for minutes: see
# docs/benchmarks.md.
bench: install
	mkdir -p bench_out
	$(BIN)/python benchmarks/bench_dropin.py --out bench_out/dropin.md
	$(BIN)/python benchmarks/bench_sampler.py --quick --out bench_out/sampler.md \
		--folder bench_out/sampler_data

clean:
	rm -rf $(VENV) demo_out bench_out *.egg-info
