# Two commands set up and use fairdistill on a fresh machine (Python 3.11, package registries only):
#   make demo  — create .venv, install, run the embedded default (colored-mnist) and print where the report is
#   make test  — the same set-up if needed, then the whole test suite but the browser test
#   make test-browser — the report rendered in headless Chromium (installs Debian's chromium when missing)
#   make lint  — ruff (lint and format check) and mypy, configured in pyproject.toml; must report nothing
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-browser lint setup clean

setup: $(STAMP)

# torch first, pinned, so that no other package can pull a newer torch with CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fairdistill run

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser"

test-browser: $(STAMP)
	bash .ci/ensure-chromium.sh
	$(BIN)/python -m pytest -q -m browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache build dist
