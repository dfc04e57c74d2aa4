"""``dk.export``: a trained model to an ONNX file, checked against the original on the user's samples
right away — a failing check is an error unless the caller accepts it.

Three sources: scikit-learn estimators and pipelines (skl2onnx; classifiers with plain ``label``
and ``probabilities`` outputs, not ZipMap), PyTorch modules (``torch.onnx.export(dynamo=True)``,
torch_export.py) and Keras 3 models (``model.export(format="onnx")``, keras_export.py).

The scikit-learn check: the original's ``predict`` (and ``predict_proba`` / ``decision_function`` when it has
them) against the ONNX model run by deploykit on the same samples: label agreement (fraction equal)
and the largest difference of the scores. Thresholds: ``min_agreement`` (default 1.0: every label)
and ``atol`` (default 1e-4 on probabilities and scores; float32 in the file against float64 in
scikit-learn).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..arguments import check_number
from ..errors import BackendUnavailable, DeployKitError, InvalidArgument
from ..loading import load
from ..reprs import html_table, text_rows
from .keras_export import backend_of, check_keras, export_keras, is_keras_model
from .torch_export import arrays, check_torch, export_torch, is_torch_module


class ExportMismatch(DeployKitError, ValueError):
    """The exported model does not give what the original gives on the samples (``report`` says how)."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


class UnsupportedModel(InvalidArgument):
    """An object the exporter cannot convert (names it and what would be needed)."""


@dataclass
class ExportReport:
    """What ``dk.export`` wrote and how the check went (``ok``: within the thresholds)."""

    path: Path
    kind: str
    inputs: list[str]
    outputs: list[str]
    samples: int
    figures: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def _rows(self) -> list[tuple[str, str]]:
        return [("model", self.kind), ("written", str(self.path)), ("inputs", ", ".join(self.inputs)),
                ("outputs", ", ".join(self.outputs)), ("checked on", f"{self.samples} sample(s)"),
                *((k, f"{v:.6g}") for k, v in self.figures.items()),
                ("check", "passed" if self.ok else "FAILED"), *(("note", n) for n in self.notes)]

    def __str__(self) -> str:
        return text_rows("deploykit export", self._rows())

    def _repr_html_(self) -> str:
        return html_table("deploykit export", self._rows(), ("", ""))


def export(obj: Any, sample_inputs: Any, path: str | Path, *, target_opset: int | None = None,
           min_agreement: float = 1.0, atol: float = 1e-4, accept_mismatch: bool = False,
           input_names: Sequence[str] | None = None, dynamic: Mapping[str, Mapping[int, str]] | None = None,
           ) -> ExportReport:
    """Write ``obj`` as ONNX to ``path`` and check it on ``sample_inputs``: a fitted scikit-learn
    estimator or pipeline (samples: an array of rows), a PyTorch module (samples: its positional
    input tensors/arrays; ``dynamic``: input name -> {axis: dimension name}, default the batch axis of
    every input; ``input_names`` default ``x`` or ``input_0``...), or a Keras 3 model (samples: its
    input arrays; the dynamic axes are those its ``Input`` leaves ``None``). ``ExportMismatch`` when
    the check fails, unless ``accept_mismatch`` (then ``report.ok`` is False)."""
    target = _path(path)
    check_number(atol, "atol", minimum=0)
    check_number(min_agreement, "min_agreement", minimum=0)
    if min_agreement > 1:
        raise InvalidArgument(f"min_agreement is a fraction of labels, 0..1; got {min_agreement!r}")
    check_number(target_opset, "target_opset", minimum=7, integer=True, allow_none=True)
    if is_torch_module(obj) and not is_keras_model(obj):  # a torch-backend Keras layer is a Module too
        return _torch_export(obj, sample_inputs, target, input_names, dynamic, target_opset, atol,
                             accept_mismatch)
    if is_keras_model(obj):
        if input_names is not None or dynamic is not None:
            raise InvalidArgument("input_names and dynamic are for PyTorch modules: a Keras model's input "
                                  "names and dynamic axes come from its Input layers")
        return _keras_export(obj, sample_inputs, target, target_opset, atol, accept_mismatch)
    if not _is_sklearn(obj):
        raise UnsupportedModel(f"dk.export takes a fitted scikit-learn estimator or pipeline, a PyTorch "
                               f"module or a Keras model, got {type(obj).__module__}.{type(obj).__name__}")
    samples = _samples(sample_inputs)
    proto = _from_sklearn(obj, samples, target_opset)
    onnx.save(proto, str(target))
    return _checked(_check(obj, target, samples, min_agreement, atol), "the original", accept_mismatch)


def _torch_export(module: Any, sample_inputs: Any, target: Path, input_names: Sequence[str] | None,
                  dynamic: Mapping[str, Mapping[int, str]] | None, opset: int | None, atol: float,
                  accept_mismatch: bool) -> ExportReport:
    samples = arrays(sample_inputs)
    batch_dynamic = export_torch(module, samples, target, input_names, dynamic, opset)
    figures, inputs, outputs = check_torch(module, target, samples, batch_dynamic)
    ok = all(v <= atol for v in figures.values())
    report = ExportReport(target, f"PyTorch {type(module).__name__}", inputs, outputs,
                          int(samples[0].shape[0]), figures, ok)
    return _checked(report, "the module", accept_mismatch)


def _keras_export(model: Any, sample_inputs: Any, target: Path, opset: int | None, atol: float,
                  accept_mismatch: bool) -> ExportReport:
    samples = arrays(sample_inputs)
    export_keras(model, samples, target, opset)
    figures, inputs, outputs = check_keras(model, target, samples)
    ok = all(v <= atol for v in figures.values())
    report = ExportReport(target, f"Keras {type(model).__name__} ({backend_of(model)} backend)", inputs,
                          outputs, int(samples[0].shape[0]), figures, ok)
    return _checked(report, "model.predict", accept_mismatch)


def _checked(report: ExportReport, original: str, accept_mismatch: bool) -> ExportReport:
    """The report, or ``ExportMismatch`` naming each figure when the check failed and was not accepted."""
    if not report.ok and not accept_mismatch:
        raise ExportMismatch(f"the exported model at {report.path} does not match {original} on the "
                             "samples: " + ", ".join(f"{k} {v:.6g}" for k, v in report.figures.items())
                             + " (pass accept_mismatch=True to keep it anyway)", report)
    return report


def _path(path: Any) -> Path:
    if not isinstance(path, (str, Path)):
        raise InvalidArgument(f"path must be where to write the .onnx file, got {type(path).__name__}")
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        raise InvalidArgument(f"path {target}: " + ("is a folder" if target.is_dir() else
                                                    f"the folder {target.parent} does not exist"))
    return target


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "sklearn" and hasattr(obj, "predict")


def _samples(sample_inputs: Any) -> np.ndarray:
    try:
        array = np.asarray(sample_inputs)
    except Exception as e:
        raise InvalidArgument(f"sample_inputs must be an array of rows, got "
                              f"{type(sample_inputs).__name__}") from e
    if array.ndim != 2 or not len(array) or array.dtype.kind not in "iuf":
        raise InvalidArgument(f"sample_inputs must be a 2-D array of numbers (rows x features), got "
                              f"{array.dtype} of shape {array.shape}")
    return array.astype(np.float32) if array.dtype != np.float32 else array


def _from_sklearn(obj: Any, samples: np.ndarray, target_opset: int | None) -> onnx.ModelProto:
    try:
        import skl2onnx
        from sklearn.utils.validation import check_is_fitted
    except ImportError as e:
        raise BackendUnavailable(f"exporting scikit-learn models needs skl2onnx: pip install "
                                 f"'deploykit[export]' ({e})") from e
    try:
        check_is_fitted(obj)
    except Exception as e:
        raise InvalidArgument(f"the {type(obj).__name__} is not fitted: fit it before exporting") from e
    options = {"zipmap": False} if hasattr(obj, "predict_proba") else None
    try:
        with warnings.catch_warnings():  # skl2onnx's own use of onnx.helper warns; not the caller's doing
            warnings.simplefilter("ignore", DeprecationWarning)
            return skl2onnx.to_onnx(obj, samples[:1], options=options, target_opset=target_opset)
    except Exception as e:  # skl2onnx's own: MissingShapeCalculator, a setting it cannot convert...
        raise UnsupportedModel(f"skl2onnx cannot convert this {type(obj).__name__}: "
                               f"{str(e).splitlines()[0][:300]}") from e


def _check(obj: Any, target: Path, samples: np.ndarray, min_agreement: float, atol: float) -> ExportReport:
    engine = load(str(target), "onnxruntime")
    inputs, names = [s.name for s in engine.inputs], [s.name for s in engine.outputs]
    outputs = engine.run({inputs[0]: samples})
    engine.close()
    figures: dict[str, float] = {}
    labels = np.asarray(obj.predict(samples))
    got_labels = outputs.get("label", outputs.get("variable"))
    if got_labels is not None:
        got = np.asarray(got_labels).reshape(labels.shape)
        if labels.dtype.kind in "iub" or labels.dtype.kind in "OU":
            figures["label agreement"] = float(np.mean(got.astype(labels.dtype) == labels))
        else:  # a regressor's predictions
            figures["prediction max abs error"] = float(np.max(np.abs(got - labels), initial=0.0))
    if hasattr(obj, "predict_proba") and "probabilities" in outputs:
        want = np.asarray(obj.predict_proba(samples))
        error = np.abs(outputs["probabilities"] - want)
        figures["probability max abs error"] = float(np.max(error, initial=0.0))
    ok = figures.get("label agreement", 1.0) >= min_agreement and all(
        v <= atol * max(1.0, float(np.max(np.abs(labels)))) if "prediction" in k else v <= atol
        for k, v in figures.items() if "error" in k)
    return ExportReport(target, f"scikit-learn {type(obj).__name__}", inputs, names, len(samples), figures,
                        ok)


__all__ = ["ExportMismatch", "ExportReport", "UnsupportedModel", "export"]
