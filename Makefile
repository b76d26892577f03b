# scprior: the two commands of the README are `make repro` and `make test`.
# Both create .venv if missing, install the pinned requirements, fetch the pinned raw inputs,
# then run the pipeline (`dvc repro`) or the tests (`pytest`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.scprior-installed

export PATH := $(BIN):$(PATH)
export MPLBACKEND := agg
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install fetch repro test lint clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "scprior needs Python >= 3.11; set PYTHON=python3.11"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

fetch: install
	$(BIN)/python -m scprior.data.fetch

repro: fetch
	$(BIN)/dvc repro

test: fetch
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check lib tests benchmarks notebooks

clean-venv:
	rm -rf $(VENV)
