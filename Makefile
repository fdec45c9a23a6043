# Two entry points (README): `make plan` (the main job offline) and `make test`.
# Each creates the virtual environment when it is missing or older than requirements.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
ARCH   ?= arm64
LAYER  := build/layers/image_ingest-$(ARCH).zip
# A Python 3.12 (the Lambda runtime's) compiles the layer's bytecode, which saves ~100 ms per cold start;
# without one the layer ships sources only (tools/build_layer.sh).
PYC_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12))

.PHONY: venv plan plan-json test layer bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The Lambda layer with the image library, built for the Lambda runtime (see tools/build_layer.sh).
layer: $(LAYER)
$(LAYER): functions/image_ingest/layer-requirements.txt tools/build_layer.sh
	ARCH=$(ARCH) PYC_PYTHON=$(PYC_PYTHON) bash tools/build_layer.sh

# Offline plan of both projects under mocks: what `pulumi up` would create, from the stack files alone.
plan: venv layer
	$(PY) -m offline.plan --stack $(STACK) ml-pipeline gpu-training

plan-json: venv layer
	$(PY) -m offline.plan --stack $(STACK) --json ml-pipeline gpu-training

test: venv layer
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/ingest_bench.py

clean:
	rm -rf $(VENV) build .pytest_cache
