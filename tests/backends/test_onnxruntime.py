"""The ONNX Runtime adapter: parity with InferenceSession on the real zoo, threads, providers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import deploykit as dk
from deploykit.hardware import usable_cpus
from tests import models, zoo

ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")


def _direct(path: str, threads: int) -> object:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("key", zoo.ONNX_MODELS)
def test_zoo_model_matches_inference_session(key: str, zoo_path, photo: np.ndarray) -> None:
    """Same runtime, same settings, same inputs: outputs must be bit-identical."""
    path = zoo_path(key)
    feeds = zoo.sample_feeds(key, photo)
    session = _direct(str(path), threads=1)
    expected = session.run(None, feeds)
    with dk.load(path, backend="onnxruntime", threads=1) as engine:
        assert [s.name for s in engine.inputs] == [i.name for i in session.get_inputs()]
        assert [s.name for s in engine.outputs] == [o.name for o in session.get_outputs()]
        got = engine.run(feeds)
    assert list(got) == [o.name for o in session.get_outputs()]
    for value, ref in zip(got.values(), expected):
        assert value.dtype == ref.dtype and value.shape == ref.shape
        np.testing.assert_array_equal(value, ref)


def test_default_threads_follow_usable_cpus() -> None:
    engine = dk.load(models.dynamic_add(), backend="onnxruntime")
    assert engine.info["threads"] == usable_cpus()
    assert dk.load(models.dynamic_add(), backend="onnxruntime", threads=1).info["threads"] == 1
    with pytest.raises(ValueError, match=r"threads must be an int >= 1 .*got 0"):
        dk.load(models.dynamic_add(), backend="onnxruntime", threads=0)


def test_session_options_pass_through() -> None:
    engine = dk.load(models.dynamic_add(), backend="onnxruntime",
                     graph_optimization_level="disable",
                     session_options={"enable_mem_pattern": False})
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(engine.run({"x": x, "y": x})["z"], 2 * x)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    assert dk.load(models.dynamic_add(), backend="onnxruntime",
                   session_options=so).info["threads"] == 1
    with pytest.raises(ValueError, match="graph_optimization_level 'max' is not one of"):
        dk.load(models.dynamic_add(), backend="onnxruntime", graph_optimization_level="max")
    with pytest.raises(ValueError, match="SessionOptions has no attribute 'turbo'"):
        dk.load(models.dynamic_add(), backend="onnxruntime", session_options={"turbo": True})


def _spinning(engine: dk.Engine) -> bool:
    return bool(engine.info["spinning"])  # read back from the session ORT made


def test_spinning_is_an_option_read_back_from_the_session() -> None:
    """ORT's pools spin between parallel sections unless told; the caller's session config wins."""
    model = models.dynamic_add()
    assert _spinning(dk.load(model, backend="onnxruntime"))  # ORT's default
    assert not _spinning(dk.load(model, backend="onnxruntime", allow_spinning=False))
    assert _spinning(dk.load(model, backend="onnxruntime", allow_spinning=True))
    assert not _spinning(dk.load(model, allow_spinning=False))  # through "auto" too
    engine = dk.load(model, backend="onnxruntime", allow_spinning=False,
                     session_options={"session.intra_op.allow_spinning": "1"})
    assert _spinning(engine)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(engine.run({"x": x, "y": x})["z"], 2 * x)
    with pytest.raises(dk.InvalidArgument, match="allow_spinning must be True or False"):
        dk.load(model, backend="onnxruntime", allow_spinning="no")
    with pytest.raises(dk.InvalidArgument, match=r"session_options\['session.x.y'\]: a session config"):
        dk.load(model, backend="onnxruntime", session_options={"session.x.y": [1]})


def test_explicit_cpu_provider_is_reported() -> None:
    engine = dk.load(models.dynamic_add(), backend="onnxruntime",
                     providers=["CPUExecutionProvider"])
    assert engine.info["providers"] == ["CPUExecutionProvider"]
    assert engine.device == "cpu" and engine.fallback is None


def _missing_gpu_provider() -> str:
    for name in ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider"):
        if name not in ort.get_available_providers():
            return name
    pytest.skip("every GPU provider is available here; nothing to refuse")


def test_unavailable_provider_raises_instead_of_silent_cpu() -> None:
    missing = _missing_gpu_provider()
    with pytest.raises(dk.BackendUnavailable,
                       match=rf"has no {missing} here; available providers: .*allow_fallback=True"):
        dk.load(models.dynamic_add(), backend="onnxruntime", providers=[missing])


def test_allowed_fallback_is_recorded_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    missing = _missing_gpu_provider()
    with caplog.at_level(logging.WARNING, logger="deploykit"):
        engine = dk.load(models.dynamic_add(), backend="onnxruntime",
                         providers=[missing, "CPUExecutionProvider"], allow_fallback=True)
    assert engine.device == "cpu"
    assert engine.fallback is not None and missing in engine.fallback
    assert engine.info["fallback"] == engine.fallback and "fallback" in repr(engine)
    assert any(missing in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_cuda_provider_when_present() -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDAExecutionProvider in this onnxruntime build (CPU-only machine)")
    engine = dk.load(models.dynamic_add(), backend="onnxruntime",
                     providers=["CUDAExecutionProvider"])
    assert engine.device == "cuda:0"


def test_runtime_log_noise_is_silenced(zoo_path, capfd: pytest.CaptureFixture[str]) -> None:
    # silero's graph makes onnxruntime warn about unused initializers on load, on stderr
    dk.load(zoo_path("silero_vad"), backend="onnxruntime").close()
    assert capfd.readouterr().err == ""
