"""deploykit models as an MLflow flavor (extra ``deploykit[mlflow]``): ``save_model`` / ``log_model`` /
``load_model`` for a model file, several artifacts of one model, or a bundle — stored *as a bundle*
(digests checked on every load) — and a pyfunc entry point, so ``mlflow.pyfunc.load_model(uri)
.predict(...)`` and ``mlflow models serve -m URI --env-manager local`` run it through deploykit. The
signature (input/output schema) comes from the model's TensorSpecs."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle.bundle import is_bundle, open_bundle
from ..bundle.pack import pack
from ..engine import Engine
from ..errors import InputMismatch, InvalidArgument, require
from ..loading import load
from ..version import __version__

FLAVOR_NAME = "deploykit"
DATA = "bundle"


def _mlflow() -> Any:
    return require("mlflow", "the MLflow flavor needs MLflow: pip install 'deploykit[mlflow]'")


def signature_of(inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> Any:
    """An MLflow ``ModelSignature`` of tensors from a bundle manifest's specs (symbolic dims -> -1)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def schema(specs: Sequence[Mapping[str, Any]]) -> Any:
        return Schema([TensorSpec(np.dtype(s["dtype"]), tuple(d if isinstance(d, int) else -1
                                                              for d in (s.get("shape") or [])), s["name"])
                       for s in specs if s.get("dtype") not in (None, "string", "object")])
    return ModelSignature(inputs=schema(inputs), outputs=schema(outputs))


def save_model(model: Any, path: str | os.PathLike[str], *, mlflow_model: Any = None, signature: Any = None,
               input_example: Any = None, pipeline: Any = None, labels: Any = None,
               metadata: Mapping[str, str] | None = None, pip_requirements: Sequence[str] | None = None,
               **_: Any) -> None:
    """Write an MLflow model folder at ``path``: ``model`` (a model file, a list of artifacts of one
    model, or a bundle folder/archive) stored as a bundle under ``bundle/``, the ``deploykit`` flavor,
    the ``python_function`` flavor, and the signature from the model's specs (unless given)."""
    mlflow = _mlflow()
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    target = Path(path)
    if target.exists() and any(target.iterdir()):
        raise InvalidArgument(f"path {target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    if is_bundle(model):
        if pipeline is not None or labels is not None or metadata is not None:
            raise InvalidArgument("pipeline, labels and metadata belong in the bundle; this model already "
                                  "is one")
        source = open_bundle(model)  # verified before it is copied
        shutil.copytree(source.folder, target / DATA)
        bundle = open_bundle(target / DATA)
    else:
        bundle = pack(model, target / DATA, pipeline=pipeline, labels=labels, metadata=metadata)
    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    mlflow_model.signature = signature if signature is not None else \
        signature_of(bundle.manifest.inputs, bundle.manifest.outputs)
    if input_example is not None:
        from mlflow.models.utils import _save_example
        _save_example(mlflow_model, input_example, str(target))
    add_to_model(mlflow_model, loader_module=__name__, data=DATA)
    mlflow_model.add_flavor(FLAVOR_NAME, data=DATA, deploykit_version=__version__)
    mlflow_model.save(str(target / "MLmodel"))
    requirements = list(pip_requirements) if pip_requirements is not None else \
        [f"deploykit=={__version__}", f"mlflow=={mlflow.__version__}", *_runtimes()]
    (target / "requirements.txt").write_text("\n".join(requirements) + "\n")


def _runtimes() -> list[str]:
    """The runtimes installed here that the model could run on (pinned), for requirements.txt."""
    from importlib import metadata
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu", "ai-edge-litert"):
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def log_model(model: Any, name: str = "model", **kwargs: Any) -> Any:
    """``save_model`` into the active run's artifacts (MLflow's ``Model.log``); returns its ModelInfo."""
    _mlflow()
    from mlflow.models import Model
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], model=model, **kwargs)


def load_model(model_uri: str, dst_path: str | None = None, **load_options: Any) -> Engine:
    """The Engine of a deploykit model in MLflow (any MLflow URI: ``runs:/...``, ``models:/...``, a
    folder); ``load_options`` go to ``dk.load`` (backend, threads, verify=...)."""
    _mlflow()
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri
    local = Path(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))
    if not (local / DATA).is_dir():
        raise InvalidArgument(f"{model_uri}: no deploykit bundle in this MLflow model (is it another "
                              "flavor?)")
    return load(str(local / DATA), **load_options)


class PyFuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a deploykit model: ``predict`` over the Engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """``data``: a dict input name -> array, one array (a one-input model), or a pandas DataFrame
        (one column per input, or all columns for a one-input model). Returns output name -> array."""
        names = [s.name for s in self.engine.inputs]
        if isinstance(data, Mapping):
            feeds = {k: np.asarray(v) for k, v in data.items()}
        elif type(data).__name__ == "DataFrame":
            feeds = {n: np.stack(data[n].to_numpy()) for n in names} if all(n in data for n in names) \
                else {names[0]: data.to_numpy()}
        elif len(names) == 1:
            feeds = {names[0]: np.asarray(data)}
        else:
            raise InputMismatch(f"one array for a model with inputs {', '.join(names)}; give a dict")
        for spec in self.engine.inputs:  # JSON numbers arrive as float64 / int64: cast to what is asked
            value = feeds.get(spec.name)
            if value is not None and value.dtype != spec.dtype and value.dtype.kind in "fiu" \
                    and spec.dtype.kind in "fiu":
                feeds[spec.name] = value.astype(spec.dtype)
        return self.engine.run(feeds)

    def unwrap_python_model(self) -> Engine:
        return self.engine


def _load_pyfunc(path: str) -> PyFuncModel:
    """MLflow's pyfunc entry point: ``path`` is the flavor's data folder (the bundle)."""
    return PyFuncModel(load(path))


__all__ = ["FLAVOR_NAME", "PyFuncModel", "load_model", "log_model", "save_model", "signature_of"]
