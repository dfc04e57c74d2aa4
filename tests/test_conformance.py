"""The conformance suite over every registered backend, and a third-party backend registered at run
time that deploykit probes, plans, loads, tunes and benchmarks like its own."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import deploykit as dk
from deploykit import backends
from deploykit.conformance import add_mul_model, check_backend
from deploykit.model import open_model
from deploykit.selection import make_plan
from tests._support import evaluator_backend
from tests.backends import tflite_models

ALL = ["declarations", "specs", "run", "input errors", "output selection", "thread safety", "plan",
       "descriptions", "close"]


@pytest.fixture
def plugin() -> Iterator[str]:
    backends.register(evaluator_backend.NAME, evaluator_backend.TARGET, aliases=("evaluator",))
    try:
        yield evaluator_backend.NAME
    finally:
        backends.unregister(evaluator_backend.NAME)


#: A model (and its expected outputs) per format, for backends that do not load ONNX.
MODELS = {"tflite": (tflite_models.dynamic_add, lambda f: {"z": f["x"] + f["y"]})}


@pytest.mark.parametrize("name", backends.names())
def test_every_registered_backend_conforms(name: str) -> None:
    """Every backend in the registry — a new one gets this test without editing it."""
    cls = backends.backend_class(name)
    model, expect = None, None
    if "onnx" not in cls.formats:
        fmt = next((f for f in cls.formats if f in MODELS), None)
        if fmt is None:
            pytest.skip(f"{name} loads {cls.formats}: give a model of that format in MODELS")
        make, expect = MODELS[fmt]
        model = make()
    try:
        assert check_backend(name, model, expect) == ALL
    except dk.BackendUnavailable as e:
        pytest.skip(f"{name} is not usable here: {e}")


def test_a_registered_plugin_conforms_and_is_used_like_a_builtin(plugin: str) -> None:
    assert check_backend(plugin) == ALL
    assert backends.canonical_name("Evaluator") == plugin
    assert backends.auto_candidates("onnx")[-2:] == [plugin, "numpy"]  # by its priority
    # probed: its distribution and its own facts are in the report
    report = dk.probe(refresh=True)
    assert report.runtime_version(plugin) == __import__("onnx").__version__
    assert report.backend_facts(plugin) == {"evaluator": "onnx.reference.ReferenceEvaluator"}
    # planned: a viable candidate of the automatic plan, in its place
    plan = make_plan(open_model(add_mul_model()))
    names = [c.backend for c in plan.candidates]
    assert plugin in names and names.index(plugin) == len(names) - 2
    # loaded, by name and with its own option
    engine = dk.load(add_mul_model(), backend="evaluator", verbose=0)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(engine.run({"x": x, "y": x})["sum"], x + x)
    with pytest.raises(dk.UnknownOption, match=r"backend 'onnx-evaluator' takes no option\(s\) bogus; "
                                               r"its options: verbose"):
        dk.load(add_mul_model(), backend=plugin, bogus=1)
    # tuned: measured among the candidates
    tuned = dk.tune(add_mul_model(), seconds=0.2, cache=False, progress=False)
    assert plugin in {c.backend for c in (*tuned.candidates, *tuned.rejected)}
    # benchmarked
    result = dk.bench(add_mul_model(), plugin, iterations=3, warmup=1, min_samples=1, progress=False)
    assert [row.backend for row in result.rows] == [plugin]


def test_register_refuses_bad_targets_and_names(plugin: str) -> None:
    with pytest.raises(dk.InvalidArgument, match="already registered"):
        backends.register(plugin, evaluator_backend.TARGET)
    with pytest.raises(dk.InvalidArgument, match=r"'package.module:Class'"):
        backends.register("x", "no_colon")
    with pytest.raises(dk.InvalidArgument, match="other than 'auto'"):
        backends.register("auto", evaluator_backend.TARGET)
    before = (dict(backends.REGISTRY), dict(backends.ALIASES))
    for aliases, match in (("abc", r"aliases must be a tuple of names"), ((3,), r"got 3"),
                           (("onnxruntime",), r"already registered: 'onnxruntime'")):
        with pytest.raises(dk.InvalidArgument, match=match):
            backends.register("another", evaluator_backend.TARGET, aliases=aliases)  # type: ignore[arg-type]
        assert before == (backends.REGISTRY, backends.ALIASES)  # nothing half-registered
    with pytest.raises(dk.InvalidArgument, match=r"replace must be True or False"):
        backends.register("another", evaluator_backend.TARGET, replace="x")  # type: ignore[arg-type]
    backends.register("broken", "tests._support.no_such_module:Nothing")
    try:
        status = dk.available_backends()["broken"]
        assert not status.available and "cannot import tests._support.no_such_module" in status.reason
        plan = make_plan(open_model(add_mul_model()))
        assert any(c.backend == "broken" and "cannot import" in (c.reason or "") for c in plan.rejected)
    finally:
        backends.unregister("broken")
