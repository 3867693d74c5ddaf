# The two commands: `make demo` and `make test`. Both set up everything they need
# (venv, Python dependencies, pinned upstream binaries) and are safe to run again.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv tools demo-tools system-deps demo demo-down test lint typecheck unit integration faults bench clean

all: test

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# Builds only what is missing from ~/.cache/gitsail/bin (cold: tens of minutes; warm: instant).
# `tools` includes the test-only references (kubeseal, sealed-secrets controller); the demo
# needs only `demo-tools`.
tools: $(STAMP)
	$(BIN)/gitsail dev tools build --test-tools

demo-tools: $(STAMP)
	$(BIN)/gitsail dev tools build

# Debian packages the integration tests start as real servers (sshd for git over SSH).
system-deps:
	@test -x /usr/sbin/sshd || { echo "installing openssh-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; }
	@test -x /usr/bin/chromium || { echo "installing chromium (the web UI's browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: demo-tools
	$(BIN)/gitsail demo up

demo-down: $(STAMP)
	$(BIN)/gitsail demo down

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy benchmarks

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: tools system-deps
	$(BIN)/pytest -q tests/integration

# Faults (apiserver restart, etcd pause, git down/slow, killed renders, killed controller) on
# a private control plane of their own: they kill and pause its processes.
faults: tools system-deps
	$(BIN)/pytest -q tests/faults

test: lint typecheck unit integration faults

bench: tools
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
