# The two commands: `make demo` and `make test`. Both set up everything they need
# (venv, Python dependencies, pinned upstream binaries) and are safe to run again.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv tools demo-tools system-deps demo demo-down test lint typecheck unit integration faults bench clean
.PHONY: dist wheelhouse image-deps image image-push test-image

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
	$(BIN)/pytest -q -m "not image" tests/integration

# Faults (apiserver restart, etcd pause, git down/slow, killed renders, killed controller) on
# a private control plane of their own: they kill and pause its processes.
faults: tools system-deps
	$(BIN)/pytest -q tests/faults

test: lint typecheck unit integration faults

bench: tools
	$(BIN)/python -m benchmarks

# The Python package: a wheel and an sdist in dist/ (docs/install.md).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

# The wheel and the wheels of its pinned dependencies: what the image installs offline.
wheelhouse: dist
	rm -rf build/wheelhouse
	$(BIN)/python -m pip download --quiet --only-binary=:all: -c requirements.lock \
	  -d build/wheelhouse dist/gitsail-*.whl

# Debian's tools for the container image (only `make image`, `test-image` need them).
image-deps:
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null && \
	  command -v skopeo >/dev/null || { echo "installing mmdebstrap umoci skopeo"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  mmdebstrap umoci skopeo; }

# The container image as an OCI layout in build/image/oci (packaging/image/build.sh).
image: image-deps wheelhouse
	$(BIN)/gitsail dev tools build helm kustomize jsonnet
	packaging/image/build.sh build/wheelhouse build/image

# Push the built image (make image first): make image-push REGISTRY=127.0.0.1:5000[/path]
# (plain HTTP to loopback registries).
image-push: image-deps
	@test -n "$(REGISTRY)" || { echo "usage: make image-push REGISTRY=host:port"; exit 2; }
	packaging/image/push.sh build/image "$(REGISTRY)"

# The image's checks (build, reproducibility, run from its filesystem): slow, apart from `test`.
test-image: tools system-deps image-deps wheelhouse
	$(BIN)/pytest -q tests/integration/image

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
