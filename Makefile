# Quick start: `make repro` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DVC stage commands say `python`: make it the project's environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro test env clean-env

env: $(STAMP)

$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-env:
	rm -rf $(VENV)
