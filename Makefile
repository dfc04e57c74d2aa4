# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv (if needed), install deploykit with what it needs, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck portable unit zoo sanitize clean onnx2tf-env fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# what only the tests need beyond the demo: PyTorch (the CPU build, ~760 MB) for dk.export's modules,
# MLflow (mlflow-skinny) for the MLflow flavor, Ray Data and Ray Serve for dk.ray
TEST_STAMP = $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,torch,mlflow,ray]"
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/deploykit demo

test: lint typecheck portable unit

lint: $(STAMP)
	$(BIN)/ruff check deploykit tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP) onnx2tf-env
	$(BIN)/python -m pytest

# dk.to_tflite's onnx2tf environment (TensorFlow 2.19 & co, ~2.6 GB, ~2 min) in deploykit's cache folder,
# made by deploykit's own code as a user's first call would; nothing to do once it is there. If the
# registry cannot be reached the conversion tests skip, saying why (the leading '-' goes on)
onnx2tf-env: $(STAMP)
	-$(BIN)/python -m deploykit.convert.onnx2tf_env

# the long fuzzing campaign over deploykit's loaders (docs/security.md): 100,000 mutated ONNX/TFLite
# models, bundle manifests and Pipeline specs, in worker processes; ~15 min on 2 cores
fuzz: $(TEST_STAMP)
	$(BIN)/python -m tests.fuzz.campaign --count 100000 --jobs 2 --out fuzz-results.json

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

# the C core built as on a machine without x86 dispatch, with -Werror (any warning fails), into a
# temporary folder so that the in-place build stays; the module it gives must load and be generic
portable: $(STAMP)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	DEPLOYKIT_PORTABLE=1 $(BIN)/python setup.py -q build_ext --force \
	    --build-lib "$$tmp/lib" --build-temp "$$tmp/tmp" && \
	$(BIN)/python -c "import glob, importlib.machinery as m, importlib.util as u, sys; \
	path = glob.glob(sys.argv[1] + '/deploykit/preprocess/_core*')[0]; \
	loader = m.ExtensionFileLoader('_core', path); mod = u.module_from_spec(u.spec_from_loader('_core', loader)); \
	loader.exec_module(mod); assert mod.SIMD == 'generic', mod.SIMD; print('portable build:', path.split('/')[-1], mod.SIMD)" "$$tmp/lib"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
