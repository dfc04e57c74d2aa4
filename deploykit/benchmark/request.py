"""What ``dk.bench`` was asked, checked before anything is loaded or timed.

Every argument is checked here for its type and range; a bad one is an ``InvalidArgument`` (or
``UnknownBackend``, ``BackendUnavailable``, ``ModelLoadError``) naming the argument, what came and
what is accepted. ``shapes``, ``dims`` and ``value_ranges`` are checked by
:func:`deploykit.synth.check_made_up`: their types here, their names and fit once the model's input
specs are known.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends as registry
from ..arguments import check_number, check_threads
from ..engine import Engine
from ..errors import BackendUnavailable, InvalidArgument, ModelLoadError
from ..hardware import probe
from ..model import ModelLike, ModelSource, open_model
from ..progress import ProgressFn, progress_fn
from ..selection import backend_reason, check_options
from ..synth import ValueRange, check_made_up

#: Default seconds of timed calls per row (when neither ``duration`` nor ``iterations`` is given).
DEFAULT_DURATION = 1.0
#: Most seconds of timed calls a row may be asked for (a day).
MAX_DURATION = 86400.0
#: Most threads calling ``run`` at once in a row (each level starts that many threads).
MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class Budget:
    """How long each row measures: ``warmup`` untimed calls per thread, then ``iterations`` timed
    calls, or calls for ``duration`` seconds and at least ``min_samples`` of them."""

    warmup: int
    duration: float
    iterations: int | None
    min_samples: int

    def describe(self) -> str:
        if self.iterations is not None:
            return f"exactly {self.iterations} timed calls per row"
        return (f"timed calls for at least {self.duration:g} s and at least {self.min_samples} "
                "calls per row")


@dataclass(frozen=True)
class Request:
    """A checked ``dk.bench`` call. ``model`` is None when an Engine was given (``engine``)."""

    model: ModelLike | None
    engine: Engine | None
    source: ModelSource
    #: canonical backend names, or ``["auto"]``
    backends: list[str]
    #: backends ``"all"`` left out, and why
    skipped: dict[str, str]
    batch_sizes: list[int] | None
    concurrency: list[int]
    budget: Budget
    inputs: Mapping[str, Any] | np.ndarray | None
    shapes: dict[str, tuple[int, ...]] | None
    dims: dict[str, int] | None
    value_ranges: dict[str, ValueRange] | None
    seed: int
    threads: int | None
    #: load options per canonical backend name
    options: dict[str, dict[str, Any]]
    progress: ProgressFn | None


def check_request(model: Any, backends: Any, *, batch_sizes: Any, concurrency: Any, duration: Any,
                  iterations: Any, warmup: Any, min_samples: Any, inputs: Any, shapes: Any, dims: Any,
                  value_ranges: Any, threads: Any, options: Any, seed: Any, progress: Any) -> Request:
    """Check every argument of ``dk.bench``, cheapest first; open the model last."""
    budget = check_budget(duration, iterations, warmup, min_samples)
    levels = positive_ints("concurrency", concurrency)
    if max(levels) > MAX_CONCURRENCY:
        raise InvalidArgument(f"concurrency={max(levels)}: each level starts that many threads; give "
                              f"at most {MAX_CONCURRENCY}")
    asked_batches = None if batch_sizes is None else positive_ints("batch_sizes", batch_sizes)
    threads = check_threads(threads)
    checked_inputs = _check_inputs(inputs)
    made_up = check_made_up(None, shapes, dims, value_ranges)  # names: once the specs are known
    if checked_inputs is not None and (made_up.shapes or made_up.dims or made_up.value_ranges):
        raise InvalidArgument("shapes, dims and value_ranges shape made-up inputs; with inputs= "
                              "given, leave them out")
    seed = check_number(seed, "seed", minimum=0, integer=True)
    bar = progress_fn(progress, "deploykit bench")
    _check_backends_type(backends)
    load_options = _check_options(options)

    engine: Engine | None = None
    path: ModelLike | None = None
    skipped: dict[str, str] = {}
    if isinstance(model, Engine):
        engine = model
        if model.closed:
            raise InvalidArgument(f"the engine for {model.source.label} is closed")
        if threads is not None or load_options:
            raise InvalidArgument("threads and options are load settings; an Engine given keeps "
                                  "its own (see engine.info) — pass the model path to set them")
        source = model.source
        names = _engine_backend(model, backends)
    else:
        _check_model_type(model)
        path = model
        source = open_model(model, check=False)
        names, skipped = resolve_backends(backends, source)
        _check_options_match(load_options, names)
    return Request(path, engine, source, names, skipped, asked_batches, levels, budget,
                   checked_inputs, made_up.shapes, made_up.dims, made_up.value_ranges, seed, threads,
                   load_options, bar)


# -- numbers -------------------------------------------------------------------------------------
def check_budget(duration: Any, iterations: Any, warmup: Any, min_samples: Any) -> Budget:
    if duration is not None and iterations is not None:
        raise InvalidArgument(f"give duration or iterations, not both (got duration={duration!r}, "
                              f"iterations={iterations!r})")
    iterations = check_number(iterations, "iterations", minimum=1, integer=True, allow_none=True)
    duration = check_number(DEFAULT_DURATION if duration is None else duration, "duration", above=0)
    if duration > MAX_DURATION:
        raise InvalidArgument(f"duration={duration!r} s per row is more than a day ({MAX_DURATION:g} s); "
                              "give fewer seconds")
    warmup = check_number(warmup, "warmup", minimum=0, integer=True)
    min_samples = check_number(min_samples, "min_samples", minimum=1, integer=True)
    return Budget(warmup, float(duration), iterations, min_samples)


def positive_ints(what: str, value: Any) -> list[int]:
    """An int >= 1 or a non-empty sequence of them (numpy ints taken, bools not), deduplicated."""
    if _is_int(value):
        items = [value]
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes)):
        items = list(value)
    else:
        items = []
    if not items or not all(_is_int(v) and v >= 1 for v in items):
        raise InvalidArgument(f"{what} must be an int >= 1 or a non-empty list of them, got {value!r}")
    return list(dict.fromkeys(int(v) for v in items))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# -- inputs and made-up inputs -----------------------------------------------------------------
def _check_inputs(inputs: Any) -> Mapping[str, Any] | np.ndarray | None:
    if inputs is None or isinstance(inputs, np.ndarray):
        return inputs
    if isinstance(inputs, Mapping):
        bad = [k for k in inputs if not isinstance(k, str)]
        if bad:
            raise InvalidArgument(f"inputs must map input names (str) to arrays, got key {bad[0]!r}")
        return inputs
    raise InvalidArgument(f"inputs must be a dict name -> array, a bare numpy array (one-input "
                          f"model) or None, got {type(inputs).__name__}")


# -- the model and its backends ------------------------------------------------------------------
def _check_model_type(model: Any) -> None:
    if isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview)):
        return
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        return
    raise InvalidArgument(f"model must be a path, bytes, an onnx.ModelProto or a loaded "
                          f"deploykit.Engine, got {type(model).__name__}")


def _check_backends_type(backends: Any) -> None:
    if backends is None or isinstance(backends, str):
        return
    if isinstance(backends, Sequence) and all(isinstance(n, str) for n in backends):
        if not backends:
            raise InvalidArgument("backends is empty; name at least one, 'all', or leave it out "
                                  "(None: the one backend='auto' picks)")
        return
    raise InvalidArgument(f"backends must be a backend name, a comma list or list of names, 'all' "
                          f"or None, got {backends!r}")


def resolve_backends(backends: str | Sequence[str] | None,
                     source: ModelSource) -> tuple[list[str], dict[str, str]]:
    """Backend names to bench (canonical; ``"auto"`` for None) and those ``"all"`` left out."""
    if backends is None or backends == "auto":
        return ["auto"], {}
    if backends == "all":
        names: list[str] = []
        skipped: dict[str, str] = {}
        for name in registry.auto_candidates(source.format):
            status = registry.availability(name)
            if status.available:
                names.append(name)
            else:
                skipped[name] = status.reason
        if not names:
            raise BackendUnavailable(f"{source.label}: no installed backend loads {source.format} "
                                     f"models: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        return names, skipped
    asked = backends.split(",") if isinstance(backends, str) else list(backends)
    names = list(dict.fromkeys(registry.canonical_name(n.strip()) for n in asked))
    for name in names:
        reason = backend_reason(name, source, probe(), {})  # the format, then the runtime
        if reason is not None:
            error = ModelLoadError if source.format not in registry.backend_class(name).formats \
                else BackendUnavailable
            raise error(f"{source.label}: backend {name!r} {reason}")
        status = registry.availability(name)
        if not status.available:
            raise BackendUnavailable(f"backend {name!r}: {status.reason}")
    return names, {}


def _engine_backend(engine: Engine, backends: str | Sequence[str] | None) -> list[str]:
    if backends not in (None, "auto"):
        asked = backends.split(",") if isinstance(backends, str) else list(backends or [])
        if [registry.canonical_name(n.strip()) for n in asked] != [engine.backend]:
            raise InvalidArgument(f"an Engine runs on its own backend ({engine.backend}); got "
                                  f"backends={backends!r}. Pass the model path to compare backends")
    return [engine.backend]


def _check_options(options: Any) -> dict[str, dict[str, Any]]:
    """Load options per canonical backend name; each name one the backend declares."""
    if options is None:
        return {}
    form = "backend name -> dict of load options, e.g. {'onnxruntime': {'providers': [...]}}"
    if not isinstance(options, Mapping):
        raise InvalidArgument(f"options must be a dict {form}, got {options!r}")
    out: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        name = registry.canonical_name(key)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise InvalidArgument(f"options[{key!r}] must be a dict of load options, got {value!r}")
        cls = registry.backend_class(name)
        check_options(cls, value, where=f"options[{key!r}]: ")  # as dk.load says it, entry named
        out[name] = dict(value)
    return out


def _check_options_match(options: dict[str, dict[str, Any]], names: list[str]) -> None:
    """Options for a backend that is not benched are a mistake (with "auto" any may be picked)."""
    for name in options:
        if name not in names and names != ["auto"]:
            raise InvalidArgument(f"options given for {name!r}, which is not benched "
                                  f"(backends: {', '.join(names)})")


__all__ = ["DEFAULT_DURATION", "MAX_CONCURRENCY", "MAX_DURATION", "Budget", "Request", "check_budget",
           "check_request", "positive_ints", "resolve_backends"]
