# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv (if needed), install deploykit with what it needs, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck unit zoo sanitize clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
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

# the C core rebuilt with AddressSanitizer + UBSan, its tests and 20000 fuzz inputs run on it,
# then the normal build restored
sanitize: $(STAMP)
	DEPLOYKIT_SANITIZE=1 $(BIN)/python setup.py -q build_ext --inplace --force
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	DEPLOYKIT_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/preprocess; \
	status=$$?; $(BIN)/python setup.py -q build_ext --inplace --force; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
