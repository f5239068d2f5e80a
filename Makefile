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
run: venv
	GAE_DATA_MIRROR=$(MIRROR) PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(BIN)/snakemake --cores $(CORES) --resources gpu=1 --config overlays='[config/$(PRESET).yaml]'

dag: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake -n --quiet rules
