"""Engine: one loaded model on one backend, with the contract every backend shares.

The engine checks state and inputs *before* a backend sees them, converts what can be converted
without losing meaning, and assembles outputs into a dict. Backends only run validated feeds.
An engine may *present* another artifact's tensor names (several artifacts of one model, see
``deploykit.artifacts``): feeds and outputs are renamed here, so no backend wraps another.
Loading and choosing a backend is ``deploykit.loading``'s work; an engine is handed a loaded backend.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, NoReturn

import numpy as np

from .backends.base import Backend
from .errors import BackendError, DeployKitError, EngineClosed, InputMismatch, InvalidArgument, first_line
from .model import ModelSource
from .plan import Plan
from .spec import TensorSpec, dtype_name, pair_specs

Feeds = Mapping[str, Any] | np.ndarray


class Engine:
    """A model loaded on a backend. Create it with :func:`deploykit.load`.

    ``run`` may be called from several threads at once; backends whose runtime is not
    thread-safe are serialised by the engine.
    """

    def __init__(self, backend: Backend, source: ModelSource, *,
                 present: tuple[Sequence[TensorSpec], Sequence[TensorSpec]] | None = None) -> None:
        """``present``: (inputs, outputs) whose *names* this engine shows instead of the backend's
        (paired by ``spec.pair_specs``: shared names by name, the rest by position); the backend's
        own dtypes, shapes and quantization are kept."""
        self._backend: Backend | None = backend
        self.source = source
        self.inputs: list[TensorSpec] = list(backend.inputs)
        self.outputs: list[TensorSpec] = list(backend.outputs)
        self.backend: str = backend.name
        self.device: str = backend.device
        #: What runs instead of what was asked for or would be best, and why (None: no fallback):
        #: the runtime's own (a dropped provider) or the plan's (a better candidate failed to load).
        self.fallback: str | None = backend.fallback
        #: How the backend was chosen (candidates, rejections with reasons); set by ``load``.
        self.plan: Plan | None = None
        #: What a bundle carries beside the model (set by ``load`` for a bundle; else None): its
        #: preprocessing (``predict`` runs it), its labels, and the bundle itself (manifest, folder).
        self.pipeline: Any = None
        self.labels: list[str] | None = None
        self.bundle: Any = None
        # presented name -> the backend's (None: the backend's names are shown)
        self._rename_in: dict[str, str] | None = None
        self._rename_out: dict[str, str] | None = None
        if present is not None:
            self._present(*present)
        self._input_names = tuple(s.name for s in self.inputs)
        self._input_set = frozenset(self._input_names)
        self._output_names = tuple(s.name for s in self.outputs)
        self._output_set = frozenset(self._output_names)
        # Per input, built once: (name, dtype, rank or None, the shape if fully static else None,
        # ((axis, fixed size), ...), spec).
        self._checks = [
            (s.name, s.dtype, s.rank, s.shape if s.is_static else None,
             tuple((i, d) for i, d in enumerate(s.shape or ()) if isinstance(d, int)), s)
            for s in self.inputs
        ]
        self._lock = None if backend.thread_safe else threading.Lock()

    def _present(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        ins, outs = pair_specs(inputs, self.inputs), pair_specs(outputs, self.outputs)
        counts_differ = len(inputs) != len(self.inputs) or len(outputs) != len(self.outputs)
        if ins is None or outs is None or counts_differ:
            raise InputMismatch(f"{self.source.label}: cannot present tensors "
                                f"{[s.name for s in (*inputs, *outputs)]} for its "
                                f"{[s.name for s in (*self.inputs, *self.outputs)]}")
        if [s.name for s in inputs] == [s.name for s in self.inputs] and \
                [s.name for s in outputs] == [s.name for s in self.outputs]:
            return
        self._rename_in = {shown.name: own.name for shown, own in zip(inputs, ins)}
        self._rename_out = {shown.name: own.name for shown, own in zip(outputs, outs)}
        self.inputs = [replace(own, name=shown.name) for shown, own in zip(inputs, ins)]
        self.outputs = [replace(own, name=shown.name) for shown, own in zip(outputs, outs)]

    def record_plan(self, plan: Plan, fallback: str | None = None) -> None:
        """Keep the plan that chose this engine, and the fallback it took if any (set by the loader)."""
        self.plan = plan
        self.fallback = fallback or self.fallback

    # -- running ---------------------------------------------------------------------------
    def run(self, feeds: Feeds, outputs: Sequence[str] | str | None = None, *,
            out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run the model. ``feeds`` maps input names to arrays (a bare array is accepted for a
        one-input model); ``outputs`` selects output names (default: all, in model order).
        ``out`` maps output names to preallocated arrays (C-contiguous, writeable, the output's
        dtype and exact shape) that receive those outputs and are returned: the runtime writes
        into them where it can (onnxruntime, through IO binding), else they are copied into."""
        # This is the hot path: every check below is a few attribute reads, no allocation
        # beyond the feeds dict handed to the backend (see benchmarks/engine_overhead.py).
        backend = self._backend
        if backend is None:
            raise EngineClosed(f"engine for {self.source.label} is closed; load the model again")
        if type(feeds) is not dict and not isinstance(feeds, Mapping):
            feeds = feeds_from(feeds, self.inputs)
        checked: dict[str, np.ndarray] = {}
        try:
            for name, dtype, rank, static, fixed, spec in self._checks:
                a = feeds[name]
                ok = type(a) is np.ndarray and a.dtype == dtype
                if ok:
                    if static is not None:
                        ok = a.shape == static
                    elif a.ndim != rank:
                        ok = False
                    else:
                        shape = a.shape
                        for axis, size in fixed:
                            if shape[axis] != size:
                                ok = False
                if not ok:
                    a = self._check_input(a, dtype, rank, fixed, spec)
                elif not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
                checked[name] = a
        except KeyError:
            self._names_mismatch(feeds)
        if len(feeds) != len(checked):
            self._names_mismatch(feeds)
        names = None if outputs is None else self._check_outputs(outputs)
        own_names = names
        if self._rename_in is not None and self._rename_out is not None:
            checked = {self._rename_in[k]: v for k, v in checked.items()}
            # in the presented order: the backend's own model order may differ
            own_names = [self._rename_out[n] for n in (self._output_names if names is None else names)]
        keys: Sequence[str] = self._output_names if names is None else names
        if out is not None:
            return self._run_into(backend, checked, own_names, keys, out)
        try:
            if self._lock is None:
                result = backend.run_impl(checked, own_names)
            else:
                with self._lock:
                    result = backend.run_impl(checked, own_names)
        except DeployKitError:
            raise
        except Exception as e:
            raise BackendError(f"{self.backend} failed running {self.source.label}: {first_line(e)}") from e
        if len(keys) == 1:
            return {keys[0]: result[0]}
        return dict(zip(keys, result))

    def _run_into(self, backend: Backend, checked: dict[str, np.ndarray], own_names: Sequence[str] | None,
                  keys: Sequence[str], out: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run`` with preallocated outputs: the backend writes into them, or they are copied into."""
        out = self._check_out(out, keys)
        rename = self._rename_out or {}
        own_out = {rename.get(k, k): v for k, v in out.items()}
        names = list(own_names) if own_names is not None else list(keys)
        try:
            if self._lock is None:
                result = self._into(backend, checked, names, own_out)
            else:
                with self._lock:
                    result = self._into(backend, checked, names, own_out)
        except DeployKitError:
            raise
        except Exception as e:
            raise BackendError(f"{self.backend} failed running {self.source.label}: {first_line(e)}") from e
        return {k: out.get(k, r) for k, r in zip(keys, result)}

    @staticmethod
    def _into(backend: Backend, feeds: dict[str, np.ndarray], names: list[str],
              out: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        result = backend.run_into_impl(feeds, names, out)
        if result is not None:
            return result
        result = backend.run_impl(feeds, names)  # the runtime cannot write into buffers: copy
        for name, got in zip(names, result):
            given = out.get(name)
            if given is not None:
                if got.shape != given.shape:
                    raise InputMismatch(f"out[{name!r}] has shape {given.shape}; the output has shape "
                                        f"{got.shape}")
                np.copyto(given, got)
        return result

    def _check_out(self, out: Any, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not isinstance(out, Mapping):
            raise InputMismatch(f"out must be a dict output name -> preallocated array, got "
                                f"{type(out).__name__}")
        specs = {s.name: s for s in self.outputs}
        for k, a in out.items():
            if k not in keys:
                raise InputMismatch(f"out[{k!r}]: not an output of this call; outputs: "
                                    f"{', '.join(map(repr, keys))}")
            spec = specs[k]
            if type(a) is not np.ndarray or a.dtype != spec.dtype or not a.flags.c_contiguous \
                    or not a.flags.writeable:
                what = f"{dtype_name(a.dtype)} array" if isinstance(a, np.ndarray) else type(a).__name__
                raise InputMismatch(f"out[{k!r}]: got {what}; expected a writeable, C-contiguous "
                                    f"{dtype_name(spec.dtype)} array shaped like {spec}")
            fixed = [(i, d) for i, d in enumerate(spec.shape or ()) if isinstance(d, int)]
            if spec.rank is not None and (a.ndim != spec.rank or any(a.shape[i] != d for i, d in fixed)):
                raise InputMismatch(f"out[{k!r}]: got shape {a.shape}; the output is {spec}")
        return dict(out)

    __call__ = run

    async def run_async(self, feeds: Feeds, outputs: Sequence[str] | str | None = None, *,
                        out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """``run`` without blocking the event loop: the call runs in the loop's default executor
        (a thread; runtimes release the GIL while they compute). Same arguments, result and errors
        as ``run``. Cancelling the awaiting task does not stop a call already running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.run, feeds, outputs, out=out))

    def _names_mismatch(self, feeds: Mapping[str, Any]) -> NoReturn:
        given = set(feeds)
        unknown = sorted(given - self._input_set, key=str)
        missing = [n for n in self._input_names if n not in given]
        parts = []
        if unknown:
            parts.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        raise InputMismatch(
            f"{'; '.join(parts)}; the model's inputs are: " + ", ".join(str(s) for s in self.inputs)
        )

    @staticmethod
    def _check_input(a: Any, dtype: np.dtype, rank: int | None,
                     fixed: tuple[tuple[int, int], ...], spec: TensorSpec) -> np.ndarray:
        """The slow path of input checking: conversion, rank and fixed dimensions."""
        name = spec.name
        if spec.kind != "tensor":  # sequences, maps, optionals go to the backend as given
            return a
        if type(a) is not np.ndarray:
            a = _as_array(a, spec)
        if a.dtype != dtype:
            a = _convert(a, spec)
        if rank is not None and a.ndim != rank:
            raise InputMismatch(
                f"input {name!r}: got {a.ndim}-d array of shape {a.shape}, expected rank "
                f"{rank}: {dtype_name(dtype)}{spec.shape_str()}"
            )
        shape = a.shape
        for axis, size in fixed:
            if shape[axis] != size:
                raise InputMismatch(
                    f"input {name!r}: got shape {shape}, expected {spec.shape_str()} "
                    f"(dimension {axis} must be {size}, got {shape[axis]})"
                )
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a

    def _check_outputs(self, outputs: Sequence[str] | str) -> list[str]:
        if not isinstance(outputs, (str, Sequence)):
            raise InputMismatch(f"outputs must be an output name or a list of them, got "
                                f"{type(outputs).__name__} {outputs!r}; the model's outputs are: "
                                f"{', '.join(map(repr, self._output_names))}")
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        bad = [n for n in names if n not in self._output_set]
        if bad or not names:
            raise InputMismatch(
                f"unknown output(s) {', '.join(map(repr, bad)) or '(none requested)'}; the "
                f"model's outputs are: {', '.join(map(repr, self._output_names))}"
            )
        return names

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._backend is None

    def close(self) -> None:
        """Release the runtime's resources; further ``run`` calls raise ``EngineClosed``."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(self, image: Any) -> dict[str, np.ndarray]:
        """Preprocessing and model in one call: ``image`` (a uint8 image, as the pipeline takes it)
        through ``engine.pipeline`` into the first input, then ``run`` — for an engine loaded from a
        bundle that carries its preprocessing."""
        if self.pipeline is None:
            raise InvalidArgument("predict needs a preprocessing pipeline: load a bundle that carries one "
                                  "(dk.pack(..., pipeline=...)), or set engine.pipeline")
        if len(self.inputs) != 1:
            raise InvalidArgument(f"predict feeds one input; this model has {len(self.inputs)} "
                                  f"({', '.join(self._input_names)}): call run with a dict")
        return self.run({self.inputs[0].name: self.pipeline(image)})

    # -- description -----------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """Backend facts as plain data: version, threads, providers, fallback, ..."""
        data: dict[str, Any] = {"backend": self.backend, "device": self.device,
                                "model": self.source.label, "format": self.source.format}
        if self._backend is not None:
            data.update(self._backend.info())
        if self._rename_in is not None and self._rename_out is not None:
            data["tensor_names"] = self._rename_in | self._rename_out
        data["fallback"] = self.fallback
        return data

    @property
    def metadata(self) -> dict[str, Any]:
        """What the model file says of itself: producer, version, doc string, and its custom
        key/value map (``custom``, e.g. class labels) — for ONNX from the ModelProto, for other
        formats what their backend can read ({} when nothing)."""
        data = self.source.metadata()
        if self._backend is not None:
            data = data | self._backend.metadata()
        return data

    def __repr__(self) -> str:
        state = " (closed)" if self.closed else ""
        lines = [f"<deploykit.Engine {self.backend} on {self.device}{state}: {self.source.label}"]
        lines += [f"  input   {s}" for s in self.inputs]
        lines += [f"  output  {s}" for s in self.outputs]
        if self.fallback:
            lines.append(f"  fallback: {self.fallback}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{kind}</td><td><code>{e(s.name)}</code></td><td>{e(dtype_name(s.dtype))}"
            f"</td><td>{e(s.shape_str())}</td></tr>"
            for kind, specs in (("input", self.inputs), ("output", self.outputs)) for s in specs
        )
        extra = f"<br>fallback: {e(self.fallback)}" if self.fallback else ""
        return (
            f"<div><b>deploykit.Engine</b> &mdash; backend <b>{e(self.backend)}</b> on "
            f"<b>{e(self.device)}</b>{' (closed)' if self.closed else ''}<br>"
            f"<code>{e(self.source.label)}</code>{extra}"
            "<table><tr><th></th><th>name</th><th>dtype</th><th>shape</th></tr>"
            f"{rows}</table></div>"
        )


def feeds_from(value: Any, inputs: Sequence[TensorSpec]) -> dict[str, Any]:
    """Feeds from what a caller passed: a mapping as is; a bare array (or anything array-like) for a
    one-input model, under that input's name. The one rule for ``run``, ``bench``, ``tune``, ``compare``."""
    if isinstance(value, Mapping):
        return dict(value)
    if value is None or isinstance(value, (str, bytes)):
        raise InputMismatch(f"feeds must be a dict name -> array (or one array for a one-input model), "
                            f"got {type(value).__name__}; the model's inputs are: "
                            + ", ".join(str(s) for s in inputs))
    if len(inputs) != 1:
        raise InputMismatch(
            f"a bare array was given but the model has {len(inputs)} inputs "
            f"({', '.join(s.name for s in inputs)}); pass a dict name -> array"
        )
    return {inputs[0].name: value}


def _as_array(value: Any, spec: TensorSpec) -> np.ndarray:
    if value is None:
        raise InputMismatch(f"input {spec.name!r}: got None, expected {spec}")
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputMismatch(
            f"input {spec.name!r}: cannot make an array of the {type(value).__name__} given "
            f"({e}); expected {spec}"
        ) from e


def _convert(a: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Convert ``a`` to the spec's dtype when no meaning is lost; raise InputMismatch otherwise.

    Allowed: float -> float, int/bool -> float, int -> int when every value fits, bool -> int,
    str -> string tensors. Refused: float -> int, numbers <-> strings, anything -> bool.
    """
    src, dst = a.dtype, spec.dtype
    want = f"expected {dtype_name(dst)} for {spec}"
    if dst == np.dtype(object):
        if src.kind in "UOS":
            return a.astype(object)
        raise InputMismatch(f"input {spec.name!r}: got {src} array, {want}")
    if src.kind in "UOSVMm" or dst.kind == "b" or src.kind not in "biufc":
        what = "object" if src.kind == "O" else dtype_name(src)  # an object array need not hold strings
        raise InputMismatch(f"input {spec.name!r}: got {what} array, {want}")
    if src.kind in "fc" and dst.kind in "iu":
        raise InputMismatch(
            f"input {spec.name!r}: got {src} array, {want}; converting would drop fractions — "
            f"cast it yourself (e.g. a.astype('{dst}'))"
        )
    if src.kind == "c" and dst.kind != "c":
        raise InputMismatch(f"input {spec.name!r}: got complex array, {want}")
    if src.kind in "iu" and dst.kind in "iu" and a.size:
        info = np.iinfo(dst)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise InputMismatch(
                f"input {spec.name!r}: {src} values in [{lo}, {hi}] do not fit {dst} "
                f"[{info.min}, {info.max}]"
            )
    with np.errstate(over="ignore"):  # overflow is detected just below, with a clear message
        out = a.astype(dst, order="C")
    narrowed = dst.kind == "f" and src.kind == "f" and dst.itemsize < src.itemsize
    if narrowed and a.size and np.isinf(out).any() and not np.isinf(a).any():
        raise InputMismatch(
            f"input {spec.name!r}: {src} values overflow {dst} (max {np.finfo(dst).max})"
        )
    return out


#: Names this module had before the architecture split, kept working with a DeprecationWarning:
#: name -> (module, attribute).
_MOVED = {"load": ("deploykit.loading", "load"), "check_threads": ("deploykit.arguments", "check_threads"),
          "check_strict": ("deploykit.opening", "check_strict")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib
        import warnings

        module, attr = _MOVED[name]
        warnings.warn(f"deploykit.engine.{name} moved to {module}.{attr}; import it from there (or use "
                      "dk.load)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), attr)  # a dynamic import: compatibility only
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Engine", "Feeds", "feeds_from"]
