"""Every public function and option refuses a bad value with a DeployKitError that names the
argument — never a raw TypeError/AttributeError, never silent acceptance. One table per function;
bench's table is in tests/benchmark, preprocessing's in tests/preprocess."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit import backends
from deploykit.demo import MODEL_PATH
from tests.backends import tflite_models

M = str(MODEL_PATH)
X = np.zeros((1, 1, 8, 8), np.float32)


def _tflite(tmp: Path) -> str:
    path = tmp / "add.tflite"
    path.write_bytes(tflite_models.dynamic_add())
    return str(path)


LOAD: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("model None", {"model": None}, dk.ModelLoadError, r"cannot load a model from NoneType"),
    ("model int", {"model": 3}, dk.ModelLoadError, r"cannot load a model from int"),
    ("backend None", {"backend": None}, dk.UnknownBackend, r"a backend name must be a string"),
    ("backend unknown", {"backend": "warp"}, dk.UnknownBackend, r"unknown backend 'warp'"),
    ("threads 0", {"threads": 0}, dk.InvalidArgument, r"threads must be an int >= 1"),
    ("threads float", {"threads": 1.5}, dk.InvalidArgument, r"threads must be an int >= 1 .*got 1.5"),
    ("threads str", {"threads": "2"}, dk.InvalidArgument, r"threads must be an int >= 1 .*got '2'"),
    ("threads bool", {"threads": True}, dk.InvalidArgument, r"threads must be an int >= 1"),
    ("threads absurd", {"threads": 100_000}, dk.InvalidArgument, r"threads=100000 is more than 4x"),
    ("check", {"check": "yes"}, dk.InvalidArgument, r"check must be True, False or 'strict'"),
    ("strict", {"strict": "yes"}, dk.InvalidArgument, r"strict must be True or False"),
    ("tune", {"tune": "yes"}, dk.InvalidArgument, r"tune must be True, False or a dict"),
    ("tune key", {"tune": {"bogus": 1}}, dk.UnknownOption, r"tune= takes the keys .*'bogus'"),
    ("tune seconds", {"tune": {"seconds": -1}}, dk.InvalidArgument, r"seconds must be a number > 0"),
    ("unknown option", {"warp_speed": 9}, dk.UnknownOption, r"takes option\(s\) warp_speed"),
    ("providers int", {"backend": "onnxruntime", "providers": 3}, dk.InvalidArgument,
     r"providers must be a provider name or a list"),
    ("providers empty", {"backend": "onnxruntime", "providers": []}, dk.InvalidArgument,
     r"providers must name at least one"),
    ("providers unknown", {"backend": "onnxruntime", "providers": "nope"}, dk.InvalidArgument,
     r"unknown execution provider 'nope'"),
    ("providers entry", {"backend": "onnxruntime", "providers": [("CPU", 1)]}, dk.InvalidArgument,
     r"each entry must be a name or \(name, \{options\}\)"),
    ("allow_fallback", {"backend": "onnxruntime", "allow_fallback": "x"}, dk.InvalidArgument,
     r"allow_fallback must be True or False"),
    ("optimization level int", {"backend": "onnxruntime", "graph_optimization_level": 77},
     dk.InvalidArgument, r"graph_optimization_level must be one of"),
    ("optimization level str", {"backend": "onnxruntime", "graph_optimization_level": "x"},
     dk.InvalidArgument, r"graph_optimization_level 'x' is not one of"),
    ("session_options type", {"backend": "onnxruntime", "session_options": 3}, dk.InvalidArgument,
     r"session_options must be an onnxruntime.SessionOptions or a dict"),
    ("session_options key", {"backend": "onnxruntime", "session_options": {"x": 1}}, dk.InvalidArgument,
     r"SessionOptions has no attribute 'x'"),
    ("session_options value", {"backend": "onnxruntime", "session_options": {"intra_op_num_threads": "a"}},
     dk.InvalidArgument, r"session_options\['intra_op_num_threads'\]"),
    ("numpy fold_constants", {"backend": "numpy", "fold_constants": "x"}, dk.InvalidArgument,
     r"fold_constants must be True or False"),
    ("session_options threads",
     {"backend": "onnxruntime", "session_options": {"intra_op_num_threads": 10**5}}, dk.InvalidArgument,
     r"session_options intra_op_num_threads=100000 is more than 4x"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), [c[1:] for c in LOAD], ids=[c[0] for c in LOAD])
def test_load_refuses(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    if kwargs.get("backend") == "onnxruntime" and not dk.available_backends()["onnxruntime"]:
        pytest.skip("onnxruntime extra not installed")
    kwargs = {"model": M, **kwargs}
    with pytest.raises(error, match=match):
        dk.load(kwargs.pop("model"), **kwargs)


TFLITE = [
    ("dequantize", {"dequantize": "yes"}, r"dequantize must be True or False"),
    ("xnnpack", {"xnnpack": 1}, r"xnnpack must be True or False"),
    ("pool", {"pool": 0}, r"pool must be an int >= 1"),
    ("pool absurd", {"pool": 10**5}, r"pool=100000 is more than 4x"),
    ("signature", {"signature": 3}, r"signature must be a signature key"),
]


@pytest.mark.parametrize(("kwargs", "match"), [c[1:] for c in TFLITE], ids=[c[0] for c in TFLITE])
def test_tflite_options_refused(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    if not dk.available_backends()["tflite"]:
        pytest.skip("no TFLite runtime here")
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.load(_tflite(tmp_path), **kwargs)


def test_threads_above_the_usable_cpus_warn_but_load() -> None:
    from deploykit.hostinfo import usable_cpus

    n = usable_cpus() + 1
    with pytest.warns(dk.DeployKitWarning, match=rf"threads={n} is more than the {n - 1} CPUs"):
        engine = dk.load(M, backend="numpy", threads=n)
    assert engine.run(X)["label"].shape == (1,)


RUN: list[tuple[str, Callable[[dk.Engine], Any], str]] = [
    ("feeds None", lambda e: e.run(None), r"feeds must be a dict name -> array .* got NoneType"),
    ("feeds str", lambda e: e.run("abc"), r"feeds must be a dict .* got str"),
    ("feeds key", lambda e: e.run({1: X}), r"unknown input\(s\) 1; missing input\(s\) 'images'"),
    ("outputs int", lambda e: e.run(X, outputs=3), r"outputs must be an output name or a list"),
    ("outputs unknown", lambda e: e.run(X, outputs=[3]), r"unknown output\(s\) 3"),
    ("outputs empty", lambda e: e.run(X, outputs=[]), r"\(none requested\)"),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in RUN], ids=[c[0] for c in RUN])
def test_run_refuses(call: Callable[[dk.Engine], Any], match: str) -> None:
    with dk.load(M) as engine, pytest.raises(dk.InputMismatch, match=match):
        call(engine)


PAIR = [M, (M, "numpy")]
COMPARE: list[tuple[str, dict[str, Any], str]] = [
    ("rtol", {"rtol": -1}, r"rtol must be a number >= 0"),
    ("atol", {"atol": "a"}, r"atol must be a number >= 0"),
    ("atol nan", {"atol": float("nan")}, r"atol must be a number >= 0"),
    ("reference range", {"reference": 9}, r"reference 9 is out of range"),
    ("reference bool", {"reference": True}, r"reference must be a candidate's position"),
    ("reference label", {"reference": "x"}, r"reference 'x' is not one of"),
    ("candidates str", {"candidates": M}, r"candidates must be a list"),
    ("one candidate", {"candidates": [M]}, r"compare needs at least two candidates"),
    ("tolerances", {"tolerances": {"x": 1}}, r"tolerances: keys are"),
    ("pair", {"candidates": [M, (M, 3)]}, r"a candidate tuple is \(model, backend name\)"),
]


@pytest.mark.parametrize(("kwargs", "match"), [c[1:] for c in COMPARE], ids=[c[0] for c in COMPARE])
def test_compare_refuses(kwargs: dict[str, Any], match: str) -> None:
    candidates = kwargs.pop("candidates", PAIR)
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.compare(candidates, X, **kwargs)


def test_compare_names_the_candidate_that_refused_the_inputs() -> None:
    """The second candidate declares a fixed batch of 2: the reference's batch of 1 does not fit it."""
    import onnx

    proto = onnx.load(M)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(dk.InputMismatch, match=r"candidate 'fixed batch' refused the inputs: input 'images'"):
        dk.compare({"digits": M, "fixed batch": (proto.SerializeToString(), "numpy")}, X)


TUNE: list[tuple[str, dict[str, Any], str]] = [
    ("seconds", {"seconds": 0}, r"seconds must be a number > 0"),
    ("cache", {"cache": "x"}, r"cache must be True, False or 'refresh'"),
    ("progress", {"progress": "x"}, r"progress must be None, True, False or a callable"),
    ("reference empty", {"reference": {}}, r"reference: an empty dict of expected outputs checks nothing"),
    ("reference", {"reference": 3}, r"reference must be None, a backend name or a dict"),
    ("shapes", {"shapes": 3}, r"shapes must be a dict"),
    ("shapes entry", {"shapes": {"images": "abc"}}, r"shapes\['images'\]"),
    ("value_ranges entry", {"value_ranges": {"images": "x"}}, r"value_ranges\['images'\]"),
    ("dims name", {"dims": {"nope": 2}}, r"dims"),
    ("seconds huge", {"seconds": 1e308}, r"seconds must be at most 86400"),
    ("rtol", {"rtol": -1}, r"rtol must be a number >= 0"),
    ("hardware", {"hardware": 3}, r"hardware must be a HardwareReport"),
    ("threads", {"threads": -2}, r"threads must be an int >= 1"),
]


@pytest.mark.parametrize(("kwargs", "match"), [c[1:] for c in TUNE], ids=[c[0] for c in TUNE])
def test_tune_refuses(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.tune(M, **kwargs)


def test_tune_refuses_an_option_no_backend_takes_as_load_does() -> None:
    with pytest.raises(dk.UnknownOption, match=r"no backend that loads onnx models takes option\(s\) bogus"):
        dk.tune(M, bogus=1)


def test_probe_and_registry_refuse() -> None:
    with pytest.raises(dk.InvalidArgument, match=r"refresh must be True or False"):
        dk.probe(refresh="x")
    with pytest.raises(dk.UnknownBackend, match=r"a backend name must be a string, got int 3"):
        backends.canonical_name(3)  # type: ignore[arg-type]


def test_every_refusal_is_a_deploykit_error_and_its_builtin() -> None:
    """The classes above are DeployKitErrors and the built-in a caller would catch."""
    for error in (dk.InvalidArgument, dk.UnknownBackend, dk.InputMismatch, dk.ModelLoadError):
        assert issubclass(error, dk.DeployKitError) and issubclass(error, ValueError)
    assert issubclass(dk.UnknownOption, TypeError) and issubclass(dk.UnknownOption, dk.InvalidArgument)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dk.load(M, threads=1).close()  # a sensible value: no warning
