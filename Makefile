# Quick start (see README):  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= smoke
CORES  ?= 2
MIRROR ?= ../shared/data
BIN     = $(VENV)/bin

.PHONY: venv test lint run dag clean-results

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
	$(BIN)/pytest

# The main job: the whole pipeline (Snakemake) on the chosen preset, then DVC records it.
# PRESET=smoke|cpu|paper. The preset is written into params.yaml's `overlays` line (visible in
# `git diff`; PRESET=paper resets it to []), so DVC sees the configuration actually used; then
# `dvc commit` records the outputs in dvc.lock and `dvc status` must report nothing to do.
# On a CPU the `gpu` resource only bounds how many train/eval jobs run at once: one per core for
# the CPU presets, one for the paper preset (one GPU).
GPUS ?= $(if $(filter paper,$(PRESET)),1,$(CORES))
run: venv
	$(BIN)/python workflow/scripts/set_preset.py $(PRESET)
	GAE_DATA_MIRROR=$(MIRROR) PATH=$(abspath $(BIN)):$$PATH \
	  $(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc commit --force --quiet
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc status
	@$(BIN)/dvc status --quiet || { echo 'make run: dvc status is not clean' >&2; exit 1; }

dag: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake -n --quiet rules
