"""The NumPy backend: an ONNX interpreter that needs nothing but numpy (and onnx to parse).

The backend of last resort where no native runtime installs, and the independent oracle the
other backends are checked against. Graph compilation lives in ``graph.py``, operators in
``ops/`` (one family per module), the registry in ``registry.py``, load-time rewrites in
``optimize.py``, the BLAS thread pool in ``blas.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ...arguments import check_bool, check_threads
from ...errors import BackendError, DeployKitWarning, ModelLoadError, first_line, warn
from ...model import ModelSource, onnx_io_specs
from ..base import CPU, Backend
from .blas import blas_pool
from .graph import CompiledGraph, Compiler, UnsupportedOps
from .protos import uses_exotic_types

log = logging.getLogger("deploykit.backends.numpy")

#: BLAS threads when ``threads`` is not given. One: the backend's BLAS share is a fraction of its
#: time (most operators run on the calling thread), so more threads gain little on an idle machine
#: and lose many times that on a busy one (measured in docs/reference-backend.md).
DEFAULT_THREADS = 1


class NumpyBackend(Backend):
    """An ONNX model compiled once into a :class:`CompiledGraph` and run with numpy kernels."""

    name = "numpy"
    formats = ("onnx",)
    extra = "core"  # numpy + onnx are deploykit's own dependencies
    thread_safe = True  # every run gets its own value table; kernels are pure
    distributions = ("numpy",)
    device_kind = CPU
    priority = 90  # the last resort of backend="auto"
    option_names = ("fold_constants", "optimize")

    @classmethod
    def runtime_version(cls) -> str:
        return str(np.__version__)

    def __init__(self, source: ModelSource, *, threads: int | None = None,
                 fold_constants: bool = True, optimize: bool = True) -> None:
        threads = check_threads(threads, warn_above_usable=False)  # dk.load warned already
        fold_constants = check_bool(fold_constants, "fold_constants")
        optimize = check_bool(optimize, "optimize")
        try:
            proto = _prepared(source, optimize)
            self.inputs, self.outputs = onnx_io_specs(proto)
            self._graph, self.delegated = _compiled(proto, fold_constants, source.label)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, UnicodeDecodeError) as e:
            # a malformed graph the checks above let through (the fuzzing found such: tensors of
            # an undefined type, attributes of the wrong kind, names that are not UTF-8)
            raise ModelLoadError(f"{source.label}: the numpy backend cannot read this model "
                                 f"({type(e).__name__}: {first_line(e)})") from e
        self._output_index = {n: i for i, n in enumerate(self._graph.output_names)}
        #: BLAS threads this engine's runs get (None: numpy's own pool size, which deploykit cannot
        #: read; ``threads_note`` says why)
        self.threads, self.threads_note = _blas_threads(threads)
        pool = blas_pool()
        self._blas = pool.describe()
        self._pool = pool if self.threads is not None else None
        self._pool_size = self.threads or 1

    @property
    def graph(self) -> CompiledGraph:
        """The compiled graph this engine runs (its steps, slots and lifetimes)."""
        return self._graph

    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> Sequence[np.ndarray]:
        graph, pool = self._graph, self._pool
        inputs = [feeds.get(n) for n in graph.input_names]
        try:
            if pool is None:
                values = graph.run(inputs)
            else:
                pool.enter(self._pool_size)
                try:
                    values = graph.run(inputs)
                finally:
                    pool.leave()
        except RuntimeError as e:
            raise BackendError(f"numpy backend: {e}") from e
        if output_names is not None:
            values = [values[self._output_index[n]] for n in output_names]
        out: list[Any] = [v if isinstance(v, (np.ndarray, list)) else np.asarray(v) for v in values]
        return out

    def info(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"version": np.__version__, "threads": self.threads}
        if self.threads_note:
            facts["threads_note"] = self.threads_note
        facts["blas"] = self._blas
        facts["steps"] = len(self._graph.steps)
        facts["delegated_ops"] = [f"{d or 'ai.onnx'}::{o}-{v}" for d, o, v in self.delegated]
        return facts


def _blas_threads(threads: int | None) -> tuple[int | None, str | None]:
    """The BLAS threads runs will really get for a ``threads`` request (None: the default), and a
    note when that is not what was asked; a request that cannot be honoured warns."""
    want = DEFAULT_THREADS if threads is None else threads
    pool = blas_pool()
    if pool.reason is not None:
        note = f"numpy's own BLAS pool size is in force, which deploykit cannot read: {pool.reason}"
        if threads is not None:
            warn(f"numpy backend: threads={threads} is not applied: {pool.reason}; numpy's own "
                 "BLAS pool size stays (set OPENBLAS_NUM_THREADS before numpy is imported instead)",
                 DeployKitWarning)
        else:
            log.info("numpy backend: %s", note)
        return None, note
    got = pool.size_in_runs(want)
    if all(n == want for n in got):
        return want, None
    note = (f"asked for {want} BLAS thread(s), numpy's BLAS pool stays at {max(got)}: another thread "
            "holds threadpoolctl's control of it (an open `with threadpool_limits(...)`?)")
    if threads is not None:
        warn(f"numpy backend: threads={threads} is not applied: {note}", DeployKitWarning)
    else:
        log.info("numpy backend: %s", note)
    return max(got), note


def _prepared(source: ModelSource, optimize: bool) -> Any:
    """The model as the compiler takes it: external tensors loaded, local functions inlined and,
    with ``optimize``, the rewrites of ``optimize.py`` applied to a copy (never the caller's)."""
    import onnx

    proto = source.proto
    if source.path is not None and _uses_external_data(proto):
        proto = onnx.load_model(str(source.path))  # with its external tensors
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    if not optimize:
        return proto
    from . import optimize as rewrite

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    changed = rewrite.fuse_conv_batchnorm(copy.graph)
    if rewrite.fuse_hardswish(copy.graph):
        copy.opset_import.append(onnx.helper.make_opsetid(rewrite.DOMAIN, 1))
        changed += 1
    return copy if changed else proto


def _compiled(proto: Any, fold_constants: bool,
              label: str) -> tuple[CompiledGraph, list[tuple[str, str, int]]]:
    """The main graph compiled, and the (domain, op, version) it delegates to onnx.reference;
    ``ModelLoadError`` listing everything the backend cannot run."""
    import onnx

    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in proto.opset_import}
    too_new = _unknown_opsets(opsets)
    if too_new:
        raise ModelLoadError(
            f"{label}: the numpy backend (onnx {onnx.__version__}) does not know "
            + ", ".join(f"opset {v} of {d or 'ai.onnx'} (newest: {n})" for d, v, n in too_new)
        )
    # bfloat16/float8/int4 tensors: onnx.reference's kernels (which use ml_dtypes) run them
    native = not uses_exotic_types(proto.graph)
    try:
        compiler = Compiler(opsets, _value_types(proto), fold_constants, native)
        graph = compiler.compile(proto.graph)
        if compiler.missing and any("context" in r for *_, r in compiler.missing):
            inferred = onnx.shape_inference.infer_shapes(proto)  # input types let them build
            compiler = Compiler(opsets, _value_types(inferred), fold_constants, native)
            graph = compiler.compile(inferred.graph)
        if compiler.missing:
            raise UnsupportedOps(sorted(set(compiler.missing)))
    except UnsupportedOps as e:
        raise ModelLoadError(f"{label}: the numpy backend does not support: {e}") from e
    except (ValueError, TypeError, KeyError) as e:
        raise ModelLoadError(f"{label}: the numpy backend cannot compile it: {e}") from e
    return graph, sorted(compiler.delegated)


def _uses_external_data(proto: Any) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in proto.graph.initializer)


def _value_types(proto: Any) -> dict[str, Any]:
    g = proto.graph
    return {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}


@lru_cache(maxsize=1)
def _newest_opsets() -> dict[str, int]:
    import onnx.defs

    newest: dict[str, int] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        newest[schema.domain] = max(newest.get(schema.domain, 0), schema.since_version)
    newest[""] = max(newest.get("", 0), onnx.defs.onnx_opset_version())
    return newest


def _unknown_opsets(opsets: dict[str, int]) -> list[tuple[str, int, int]]:
    """(domain, version, newest known) for each opset newer than the installed onnx defines."""
    newest = _newest_opsets()
    return [(d, v, newest[d]) for d, v in opsets.items() if d in newest and v > newest[d]]
