"""Following a plan: a fallback is visible without configuring logging (engine.fallback, repr, a
FallbackWarning), refused under strict; a plan's error lists only the candidates that were in the
running; tune=True never makes a loadable model unloadable."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

import deploykit as dk
from tests import models
from tests.test_selection import global_lp_pool


def _ort_refuses_it() -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    try:
        ort.InferenceSession(global_lp_pool().SerializeToString())
    except Exception:
        return
    pytest.skip("this onnxruntime runs GlobalLpPool-22: nothing falls back")


def test_a_fallback_under_auto_is_visible_by_default() -> None:
    _ort_refuses_it()
    with pytest.warns(dk.FallbackWarning, match=r"runs on numpy on cpu because onnxruntime\[CPU\] on cpu "
                                                r"\(.*GlobalLpPool.*\) failed to load"):
        engine = dk.load(global_lp_pool())
    assert engine.backend == "numpy" and engine.fallback is not None
    assert "failed to load" in engine.fallback and "fallback:" in repr(engine)
    assert "fallback" in engine._repr_html_() and engine.info["fallback"] == engine.fallback
    assert engine.plan is not None and engine.plan.fell_back
    with pytest.raises(dk.ModelLoadError, match="strict=True refuses to fall back"):
        dk.load(global_lp_pool(), strict=True)


def test_no_fallback_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = dk.load(models.fixed_image())
    assert engine.fallback is None and "fallback" not in repr(engine)


def test_providers_idiom_cuda_else_cpu() -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: nothing to fall back from")
    with pytest.warns(dk.FallbackWarning, match=r"requested providers \['CUDAExecutionProvider'\] are not "
                                                r"active"):
        engine = dk.load(models.fixed_image(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine.info["providers"] == ["CPUExecutionProvider"] and engine.device == "cpu"
    assert engine.fallback and "CUDAExecutionProvider" in engine.fallback
    with pytest.raises(dk.BackendUnavailable, match=r"has no CUDAExecutionProvider here"):
        dk.load(models.fixed_image(), providers="CUDA")  # no CPU in the list: exactly CUDA
    with pytest.raises(dk.BackendUnavailable, match=r"strict=True"):
        dk.load(models.fixed_image(), providers=["CUDA", "CPU"], strict=True)
    one = dk.load(models.fixed_image(), backend="onnxruntime", providers="cpu")  # a string, short name
    assert one.info["providers"] == ["CPUExecutionProvider"] and one.fallback is None


def test_a_tflite_error_lists_only_tflite_candidates(tmp_path) -> None:
    from tests.backends import tflite_models

    if not dk.available_backends()["tflite"]:
        pytest.skip("no TFLite runtime here")
    path = tmp_path / "custom.tflite"
    path.write_bytes(tflite_models.custom_op())
    with pytest.raises(dk.ModelLoadError) as info:
        dk.load(path)
    assert "DeployKitNoSuchOp" in str(info.value)
    assert "onnxruntime" not in str(info.value) and "numpy" not in str(info.value)


def test_tune_true_loads_by_rule_when_inputs_cannot_be_made_up(tmp_path) -> None:
    """A model whose made-up inputs every candidate refuses still loads with tune=True (by rule,
    with a warning saying how to give inputs)."""
    import onnx
    from onnx import TensorProto, helper

    # Reshape to a shape given by an int64 input: made-up values fail at run time on every backend
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "reshape.onnx"
    onnx.save(model, path)
    with pytest.warns(dk.DeployKitWarning, match=r"tune: could not measure .* loaded by rule instead"):
        engine = dk.load(path, tune={"cache": False, "progress": False})
    assert engine.plan is not None and any(n.startswith("tune: could not measure") for n in engine.plan.notes)
    out = engine.run({"x": np.arange(6, dtype=np.float32), "shape": np.array([2, 3])})
    assert out["y"].shape == (2, 3)


def test_run_async_gives_what_run_gives() -> None:
    engine = dk.load(models.fixed_image())
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)

    async def main() -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(engine.run_async({engine.inputs[0].name: x + i}) for i in range(4)))

    results = asyncio.run(main())
    for i, got in enumerate(results):
        want = engine.run({engine.inputs[0].name: x + i})
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(dk.InputMismatch):
        asyncio.run(engine.run_async(None))  # type: ignore[arg-type]
