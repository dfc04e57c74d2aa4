"""The backend registry: lazy imports, availability with reasons, names and the auto order."""

from __future__ import annotations

import subprocess
import sys

import pytest

import deploykit as dk
from deploykit import backends


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_import_deploykit_imports_no_runtime() -> None:
    proc = _python("import sys, deploykit; "
                   "print(sorted(m for m in ('onnxruntime', 'onnx', 'ai_edge_litert', "
                   "'tensorrt', 'pycuda') if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_available_backends_reports_onnxruntime() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    status = dk.available_backends()
    assert set(status) == set(backends.REGISTRY)
    ort = status["onnxruntime"]
    assert ort.available and bool(ort) and ort.reason == ""
    assert ort.version == __import__("onnxruntime").__version__
    assert ort.formats == ("onnx",)


def test_missing_runtime_is_explained_and_auto_falls_back_to_numpy() -> None:
    # A fresh interpreter in which onnxruntime cannot be imported (as on a machine without it).
    proc = _python(
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import deploykit as dk\n"
        "s = dk.available_backends()['onnxruntime']\n"
        "print(s.available, s.reason)\n"
        "print(dk.load('deploykit/demo/digits.onnx').backend)\n"
        "try:\n"
        "    dk.load('deploykit/demo/digits.onnx', backend='onnxruntime')\n"
        "except dk.BackendUnavailable as e:\n"
        "    print('ERR', e)\n"
    )
    assert proc.returncode == 0, proc.stderr
    first, second, third = proc.stdout.strip().splitlines()
    assert first.startswith("False onnxruntime is not installed")
    assert "pip install 'deploykit[onnxruntime]'" in first
    assert second == "numpy"
    assert third.startswith("ERR onnxruntime is not installed")


def test_names_aliases_and_unknown() -> None:
    assert backends.canonical_name("ORT") == "onnxruntime"
    assert backends.canonical_name("OnnxRuntime") == "onnxruntime"
    assert backends.canonical_name("reference") == "numpy"
    with pytest.raises(dk.UnknownBackend, match=r"unknown backend 'tvm'; known backends: numpy, onnxruntime"):
        backends.canonical_name("tvm")


def test_auto_order_is_documented_priority() -> None:
    order = backends.auto_order()
    assert order == list(backends.AUTO_ORDER)  # the former constant, now each adapter's priority
    assert order.index("onnxruntime") < order.index("numpy") and order.index("tflite") < order.index("numpy")
    assert backends.auto_candidates("onnx") == ["tensorrt", "onnxruntime", "numpy"]
    assert backends.auto_candidates("tflite") == ["tflite"]
    assert backends.canonical_name("LiteRT") == "tflite"


def test_every_registered_backend_honours_the_contract() -> None:
    from deploykit.backends.base import Backend

    for name in backends.REGISTRY:
        cls = backends.backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name
        assert cls.formats and cls.extra
