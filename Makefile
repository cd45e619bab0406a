# Two commands for a newcomer: `make demo` and `make test`. Both create .venv
# and install what they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test lint fmt bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The whole pipeline on the offline demo config (synthetic classes, small sizes).
demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config.demo.yaml
	@echo "Report: $(CURDIR)/results/report/index.html (single file: results/report/report-standalone.html)"

# loadfile: a test file runs on one worker, so its module fixtures (whole snakemake runs,
# a trained network) are built once; with the default split each worker built its own.
# (xdist_group/loadgroup does not group under pytest 9 with xdist 3.8: checked.)
test: $(STAMP)
	$(BIN)/python -m pytest -n $(CORES) --dist loadfile --no-loadscope-reorder -ra tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules/

# Benchmarks print ratios against a reference measured in the same run.
bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train_throughput.py --backbone alexnet --size 64 --batch 32 --steps 16 --epochs 4
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/epoch_backup.py
