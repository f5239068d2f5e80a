# Quick start (see README):  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= quick
CORES  ?= 2
MIRROR ?= ../shared/data
# pytest-xdist workers for `make test` (most tests use one thread: two fit two cores); each test
# module stays on one worker (--dist loadscope), so a module's shared pipeline run is made once
WORKERS ?= 2
BIN     = $(VENV)/bin

.PHONY: venv test lint run dry dag clean-results

venv: $(VENV)/.installed

# torch==2.13.0 (CPU wheel) comes from requirements/constraints.txt; GPU users see README.
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[pipeline,dev]"
	touch $@

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/pytest -n $(WORKERS) --dist loadscope --durations=15

# The main job: the whole pipeline (Snakemake) on the chosen preset, then DVC records it.
# PRESET=quick (default: recognisable samples and meaningful tables in ~15 min on 2 cores)
# |cpu|smoke|paper. The preset is written into params.yaml's `overlays` line (visible in
# `git diff`; PRESET=paper resets it to []), so DVC sees the configuration actually used.
# A stale Snakemake lock (a killed run) is removed first; another live run in this folder stops
# it. Snakemake's `onsuccess` records the outputs in dvc.lock; `dvc commit` runs here again for a
# run that had nothing to do (Snakemake skips `onsuccess` then), and `dvc status` must be clean.
# On a CPU the `gpu` resource only bounds how many train/eval jobs run at once: one per core for
# the CPU presets, one for the paper preset (one GPU).
GPUS ?= $(if $(filter paper,$(PRESET)),1,$(CORES))
run: venv
	$(BIN)/python workflow/scripts/set_preset.py $(PRESET)
	$(BIN)/python workflow/scripts/unlock_stale.py
	GAE_DATA_MIRROR=$(MIRROR) PATH=$(abspath $(BIN)):$$PATH \
	  $(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS) --rerun-incomplete
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc commit --force --quiet
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc status
	@$(BIN)/dvc status --quiet || { echo 'make run: dvc status is not clean' >&2; exit 1; }

# A dry run of both tools: what would run. `dvc repro --dry` alone fails on a fresh clone with
# DVC 3.67 (its run-cache lookup hashes a dependency that an earlier stage has not made yet,
# treeverse/dvc#9021); --force-downstream skips that lookup for the stages after a changed one.
dry: venv
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake -n --quiet rules
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro --dry --force-downstream

dag: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake -n --quiet rules
