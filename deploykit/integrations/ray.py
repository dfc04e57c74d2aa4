"""Batch inference on Ray Data (extra ``deploykit[ray]``): ``dk.ray.predict(dataset, model)`` maps a
class-based worker over the dataset's batches — the engine loaded once per actor, its threads sized
to the CPUs Ray gives the actor (not the host's), a bundle's preprocessing run on image columns with
deploykit's C core, the batch kept as numpy (no pandas round trip). ``dk.ray.deployment(repository)``:
the same models online on Ray Serve (``rayserve``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..arguments import check_bool, check_number
from ..errors import BackendUnavailable, InvalidArgument, require
from ..loading import load
from ..preprocess import Pipeline
from .rayworker import actor_cpus


def _ray_data() -> Any:
    return require("ray.data", "batch inference on Ray needs Ray Data: pip install 'deploykit[ray]'")


class Predictor:
    """The per-actor worker: one engine, loaded once; each call maps a numpy batch to its outputs."""

    def __init__(self, model: Any, columns: Mapping[str, str], outputs: Mapping[str, str] | None,
                 preprocess: Any, keep: bool, options: Mapping[str, Any]) -> None:
        threads = options.get("threads")
        self.threads = actor_cpus() if threads is None else threads
        others = {k: v for k, v in options.items() if k != "threads"}
        self.engine = load(model, threads=self.threads, **others)
        self.columns = dict(columns) if columns else {self.engine.inputs[0].name: "image"}
        self.outputs = dict(outputs) if outputs else {s.name: s.name for s in self.engine.outputs}
        self.pipeline = self.engine.pipeline if preprocess is None else preprocess or None
        self.keep = keep

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for name, column in self.columns.items():
            if column not in batch:
                raise InvalidArgument(f"the batch has no column {column!r} for input {name}; its columns: "
                                      f"{', '.join(batch)}")
            value = batch[column]
            if self.pipeline is not None and len(self.columns) == 1:  # pixels -> the model's tensor
                # the actor's CPUs, not the host's (measured: 2 threads on a 1-CPU actor is slower)
                value = self.pipeline.batch(list(value), threads=self.threads)
            feeds[name] = value
        out = self.engine.run(feeds)
        result = {k: v for k, v in batch.items() if self.keep or k not in self.columns.values()}
        clash = sorted(set(result) & set(self.outputs.values()))
        if clash:
            raise InvalidArgument(f"output column(s) {', '.join(clash)} would replace the dataset's own; "
                                  f"name them otherwise with output_columns={{output name: column}}")
        result.update({column: out[name] for name, column in self.outputs.items()})
        return result


def predict(dataset: Any, model: Any, *, input_column: str | Mapping[str, str] = "image",
            output_columns: Mapping[str, str] | None = None, preprocess: Any = None, keep_input: bool = False,
            batch_size: int = 64, concurrency: int | tuple[int, int] = 1, num_cpus_per_worker: float = 1,
            **load_options: Any) -> Any:
    """``dataset`` (a Ray Dataset) with the model's outputs added as columns. ``model``: a path or a
    bundle (``dk.load`` takes it; ``load_options`` too). ``input_column``: the column feeding a
    one-input model, or input name -> column. A bundle's pipeline turns an image column (uint8 HWC
    arrays, as ``ray.data.read_images`` gives them) into the model's tensor; ``preprocess=False``
    turns that off, a Pipeline replaces it. ``output_columns``: output name -> column (default: the
    output names). ``keep_input`` keeps the input columns. ``concurrency``: actors (or a (min, max)
    autoscaling range), each with ``num_cpus_per_worker`` CPUs — the engine's threads."""
    if not isinstance(dataset, _ray_data().Dataset):
        raise InvalidArgument(f"dataset must be a Ray Dataset (ray.data.read_images, read_parquet, "
                              f"from_items, ...), got {type(dataset).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be a positive number of rows, got {batch_size!r}")
    check_number(num_cpus_per_worker, "num_cpus_per_worker", above=0)
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidArgument(f"model must be a path (a model file or a bundle) every actor can read, got "
                              f"{type(model).__name__}")
    keep_input = check_bool(keep_input, "keep_input")
    if preprocess is not None and preprocess is not False and not isinstance(preprocess, Pipeline):
        raise InvalidArgument(f"preprocess must be None (the bundle's pipeline), False (none) or a "
                              f"dk.preprocess.Pipeline, got {type(preprocess).__name__}")
    columns = _columns(input_column, output_columns, model, load_options)
    if isinstance(preprocess, Pipeline) and len(columns) != 1:
        raise InvalidArgument(f"preprocess: a Pipeline feeds a one-input model; this one has inputs "
                              f"{', '.join(columns)}")
    settings = {"model": str(model), "columns": columns, "outputs": output_columns, "preprocess": preprocess,
                "keep": keep_input, "options": load_options}
    return dataset.map_batches(Predictor, fn_constructor_kwargs=settings, batch_size=batch_size,
                               compute=_actors(concurrency), num_cpus=num_cpus_per_worker,
                               batch_format="numpy")


def _actors(concurrency: Any) -> Any:
    """Ray Data's actor pool for ``concurrency`` actors, or a (min, max) autoscaling range."""
    from ray.data import ActorPoolStrategy
    if isinstance(concurrency, tuple) and len(concurrency) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in concurrency) \
            and concurrency[0] <= concurrency[1]:
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
        return ActorPoolStrategy(size=concurrency)
    raise InvalidArgument(f"concurrency must be a number of actors or a (min, max) range, got "
                          f"{concurrency!r}")


def _columns(input_column: Any, output_columns: Any, model: Any,
             options: Mapping[str, Any]) -> dict[str, str]:
    """Input name -> column, checked against the model's inputs (a single column name is resolved
    against its one input); ``output_columns`` checked against its outputs; the load options checked
    by loading the model once here (without them when this machine lacks their runtime or device:
    a CPU-only driver of GPU actors)."""
    mapped = isinstance(input_column, Mapping)
    if mapped and (not input_column or not _names_to_names(input_column)):
        raise InvalidArgument("input_column must map input names to column names")
    if not mapped and (not isinstance(input_column, str) or not input_column):
        raise InvalidArgument(f"input_column must be a column name, got {input_column!r}")
    if output_columns is not None and not _names_to_names(output_columns):
        raise InvalidArgument(f"output_columns must map output names to column names, got {output_columns!r}")
    if output_columns is not None and len(set(output_columns.values())) != len(output_columns):
        raise InvalidArgument(f"output_columns gives two outputs the same column: {dict(output_columns)}")
    try:
        engine = load(model, **options)
    except BackendUnavailable:
        engine = load(model)
    with engine:  # the driver reads the names once (cheap next to the job)
        inputs, outputs = [s.name for s in engine.inputs], [s.name for s in engine.outputs]
    for given, names, what in ((input_column if mapped else {}, inputs, "input"),
                               (output_columns or {}, outputs, "output")):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InvalidArgument(f"the model has no {what} {', '.join(map(repr, unknown))}; its {what}s: "
                                  f"{', '.join(names)}")
    if mapped:
        missing = [name for name in inputs if name not in input_column]
        if missing:
            raise InvalidArgument(f"input_column names no column for input(s) {', '.join(missing)}")
        return dict(input_column)
    if len(inputs) != 1:
        raise InvalidArgument(f"the model has inputs {', '.join(inputs)}: give input_column={{input name: "
                              "column}")
    return {inputs[0]: input_column}


def _names_to_names(value: Any) -> bool:
    """A mapping of strings to strings (tensor names to column names)."""
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items())


def deployment(repository: Any, **options: Any) -> Any:
    """A Ray Serve application serving ``repository`` as ``deploykit serve`` does, replicated by Ray
    (``serve.run(dk.ray.deployment("repo", num_replicas=2))``; the options: ``rayserve.deployment``)."""
    require("ray.serve", "serving on Ray needs Ray Serve: pip install 'deploykit[ray]'")
    from .rayserve import deployment as build

    return build(repository, **options)


__all__ = ["Predictor", "actor_cpus", "deployment", "predict"]
