# Two entry points (README): `make plan` (the main job offline) and `make test`.
# `make plan` installs the runtime requirements only; `make test` adds the development ones.
# Set-up steps write to stderr, so `make plan-json | jq` reads JSON alone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
ARCH   ?= arm64
LAYER  := build/layers/image_ingest-$(ARCH).zip
# A Python 3.12 (the Lambda runtime's) compiles the layer's bytecode, which saves ~100 ms per cold start;
# without one the layer ships sources only (tools/build_layer.sh).
PYC_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12))

.PHONY: venv venv-dev plan plan-json test layer bench diagrams docs clean

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

$(VENV)/.runtime: requirements.txt pyproject.toml
	@echo "installing runtime requirements into $(VENV)" >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install --quiet -r requirements.txt >&2
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	@echo "installing development requirements into $(VENV)" >&2
	@$(PY) -m pip install --quiet -r requirements-dev.txt >&2
	@touch $@

# The Lambda layer with the image library, built for the Lambda runtime (see tools/build_layer.sh).
layer: $(LAYER)
$(LAYER): functions/image_ingest/layer-requirements.txt tools/build_layer.sh
	@ARCH=$(ARCH) PYC_PYTHON=$(PYC_PYTHON) bash tools/build_layer.sh >&2

# Offline plan of both projects under mocks: what `pulumi up` would create, from the stack files alone.
plan: venv layer
	@$(PY) -m offline.plan --stack $(STACK) ml-pipeline gpu-training

plan-json: venv layer
	@$(PY) -m offline.plan --stack $(STACK) --json ml-pipeline gpu-training

test: venv-dev layer
	$(PY) -m pytest -q

bench: venv-dev
	$(PY) bench/ingest_bench.py
	$(PY) bench/serving_bench.py

# Each stack's resources by component (docs/diagrams/; needs Graphviz: apt-get install graphviz), and the
# README's config-limits tables; tests fail when either is stale.
diagrams: venv-dev layer
	$(PY) tools/diagram.py

docs: venv layer diagrams
	$(PY) -m offline.config_docs --write

clean:
	rm -rf $(VENV) build .pytest_cache
