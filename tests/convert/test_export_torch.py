"""dk.export on PyTorch modules (torch.onnx.export with dynamo): dynamic batch and sequence length
declared and checked — against the module on the samples, on one sample alone, and at lengths the
export never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import deploykit as dk

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the [torch] extra; make test "
                                            "installs it)")
pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")


def test_an_mlp_exports_with_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    report = dk.export(mlp, torch.randn(5, 8), tmp_path / "mlp.onnx")
    assert report.ok and report.kind == "PyTorch Sequential"
    assert all(v < 1e-5 for v in report.figures.values()) and any("(batch 1)" in k for k in report.figures)
    engine = dk.load(tmp_path / "mlp.onnx")
    x = np.random.default_rng(0).normal(size=(9, 8)).astype(np.float32)  # a batch it never saw
    with torch.no_grad():
        want = mlp(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(next(iter(engine.run({"x": x}).values())), want, atol=1e-5)


def test_a_transformer_encoder_keeps_its_sequence_length_dynamic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, num_layers=2)
    report = dk.export(encoder, torch.randn(3, 10, 32), tmp_path / "enc.onnx",
                       dynamic={"x": {0: "batch", 1: "seq"}})
    assert report.ok, str(report)
    engine = dk.load(tmp_path / "enc.onnx")
    assert engine.inputs[0].shape == ("batch", "seq", 32)
    encoder.eval()
    for shape in [(1, 3, 32), (2, 37, 32)]:  # lengths the export never saw
        x = torch.randn(*shape)
        with torch.no_grad():
            want = encoder(x).numpy()
        got = next(iter(engine.run({"x": x.numpy()}).values()))
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"dynamic": {"y": {0: "batch"}}}, "dynamic: no input 'y'"),
    ({"dynamic": {"x": {5: "batch"}}}, "axis 5 is not an axis"),
    ({"input_names": ["a", "b"]}, "2 names for 1 inputs"),
])
def test_bad_export_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    mlp = torch.nn.Linear(4, 2)
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.export(mlp, torch.randn(2, 4), tmp_path / "m.onnx", **kwargs)


def test_samples_that_are_not_tensors_are_refused(tmp_path: Path) -> None:
    with pytest.raises(dk.InvalidArgument, match=r"sample_inputs\[0\]"):
        dk.export(torch.nn.Linear(4, 2), "rows", tmp_path / "m.onnx")
