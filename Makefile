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
