# The two commands: `make demo` and `make test`. Both set up everything they need
# (venv, Python dependencies, pinned upstream binaries) and are safe to run again.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv tools demo demo-down test lint typecheck unit integration bench clean

all: test

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# Builds only what is missing from ~/.cache/gitsail/bin (cold: tens of minutes; warm: instant).
tools: $(STAMP)
	$(BIN)/gitsail dev tools build

demo: tools
	$(BIN)/gitsail demo up

demo-down: $(STAMP)
	$(BIN)/gitsail demo down

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: tools
	$(BIN)/pytest -q tests/integration

test: lint typecheck unit integration

bench: tools
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
