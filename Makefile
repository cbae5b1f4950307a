# hate_compress — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real datasets live beside the checkout (../shared/data) on project machines; elsewhere the
# demo falls back to the synthetic sample shipped with the package.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/germeval2018/train.tsv),)
export HATE_COMPRESS_DATA_DIR ?= $(SHARED_DATA)
endif
DEMO_DATA := $(if $(HATE_COMPRESS_DATA_DIR),germeval_coarse,synthetic)

.PHONY: install demo test lint bench bench-tables clean

install: $(STAMP)

# torch first, pinned to the CPU build: a loose pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	@echo "demo: data=$(DEMO_DATA) (HATE_COMPRESS_DATA_DIR=$(HATE_COMPRESS_DATA_DIR))"
	$(PY) -m hate_compress experiment=demo data=$(DEMO_DATA)

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check hate_compress tests bench

# every benchmark, then BENCHMARKS.md's tables from bench/results/*.json (hours on 2 cores);
# `make bench ONLY=kd_throughput,memory` runs some (`python bench/run_all.py --list`)
bench: install
	$(PY) bench/run_all.py $(if $(ONLY),--only $(ONLY))

# BENCHMARKS.md's tables from the committed bench/results/*.json, no benchmark run
bench-tables: install
	$(PY) bench/tables.py

clean:
	rm -rf outputs .cache .pytest_cache
