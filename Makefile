# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv (if needed), install deploykit with what it needs, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck unit zoo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deploykit demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check deploykit tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

# fetch the real-model zoo into the cache ahead of time (tests fetch on first use anyway)
zoo: $(STAMP)
	$(BIN)/python -m tests.zoo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
