"""LiteRT / TFLite adapter: ``.tflite`` models behind the Engine contract.

Runtime, first found wins: ``ai-edge-litert`` (the maintained package), ``tflite-runtime``, then
``tensorflow.lite``. A model with a SignatureDef is driven by its signature names; one without by
its input/output tensors, named as the file stores them. Dynamic (-1) dimensions are resized to
the incoming shape, and tensors re-allocated only when that shape changes.

A TFLite interpreter is not thread-safe, so the adapter keeps a pool of interpreters: a call takes
an idle one (or creates one, up to ``pool``; else waits for one) and gives it back, so concurrent
calls never share one. ``pool`` defaults to usable CPUs // ``threads``: one interpreter using
every CPU by default (calls take turns), one per CPU with ``threads=1``.

The runtime's C++ logger writes start-up chatter to fd 2 (``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.``): interpreter creation and first allocation run inside
:func:`runtime_chatter.silenced`, which logs it at DEBUG here and passes any other output through;
``DEPLOYKIT_LOG_RUNTIME=1`` lets the runtime print it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import queue
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arguments import check_bool, check_threads
from ..errors import (
    BackendError,
    BackendUnavailable,
    DeployKitError,
    InvalidArgument,
    ModelLoadError,
    first_line,
)
from ..hostinfo import usable_cpus
from ..model import ModelSource
from ..spec import Quantization, TensorSpec, normalize_dim
from . import runtime_chatter
from .base import Backend

log = logging.getLogger("deploykit.backends.tflite")

_INSTALL = "install it with: pip install 'deploykit[tflite]'"
_CUSTOM_OP = re.compile(r"unresolved custom op: ([^\s.]+)")
#: What an extension built against NumPy 1.x says when imported under NumPy 2.
_NUMPY_ABI = ("_ARRAY_API", "numpy.core.multiarray failed to import", "compiled using NumPy 1.x",
              "numpy.core._multiarray_umath")


#: The smallest model (one float32[1] tensor, input and output, no operator; written by
#: tests/backends/tflite_models.py:probe). Creating an interpreter on it shows that a runtime
#: really works: tflite-runtime 2.14 imports fine under NumPy 2 and only fails here.
_PROBE = bytes.fromhex(
    "1800000054464c3300000e00140010000c000800000004000e000000100000001c000000980000000300000001000000"
    "080000000400040004000000010000001400000000000e001800140010000c00080004000e000000140000001c000000"
    "1c00000020000000240000000500000070726f6265000000000000000100000000000000010000000000000001000000"
    "100000000c000c0008000000000004000c000000080000000c0000000100000078000000010000000100000000000000"
)


@dataclass(frozen=True)
class Runtime:
    """The TFLite runtime found: its package name, version and ``interpreter`` module."""

    package: str
    version: str
    module: Any


_runtime_cache: list[Runtime] = []
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """Import the first TFLite runtime that works here; ``BackendUnavailable`` says why none did."""
    if _runtime_cache:
        return _runtime_cache[0]
    with _runtime_lock:
        if not _runtime_cache:
            _runtime_cache.append(_find_runtime())
    return _runtime_cache[0]


def _find_runtime() -> Runtime:
    reasons: list[str] = []
    candidates = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"))
    for package, top in candidates:
        try:
            mod = importlib.import_module(f"{top}.interpreter")
            version = str(getattr(importlib.import_module(top), "__version__", "?"))
            with runtime_chatter.silenced(log):
                mod.Interpreter(model_content=_PROBE)
            return Runtime(package, version, mod)
        except Exception as e:  # ImportError, or SystemError/AttributeError from a broken build
            reasons.append(f"{package}: {_explain_import_error(e)}")
    if importlib.util.find_spec("tensorflow") is None:  # importing TF is slow: only if present
        reasons.append("tensorflow: not installed")
    else:
        try:
            tf = importlib.import_module("tensorflow")
            lite = _TFLite(tf.lite.Interpreter, tf.lite.experimental)
            with runtime_chatter.silenced(log):
                lite.Interpreter(model_content=_PROBE)
            return Runtime("tensorflow", str(tf.__version__), lite)
        except Exception as e:
            reasons.append(f"tensorflow: {_explain_import_error(e)}")
    raise BackendUnavailable("no TFLite runtime works here (" + "; ".join(reasons) + f"); {_INSTALL}")


class _TFLite:
    """``tensorflow.lite`` seen as an ``interpreter`` module (``Interpreter``, ``OpResolverType``)."""

    def __init__(self, interpreter: Any, experimental: Any) -> None:
        self.Interpreter = interpreter
        self.OpResolverType = experimental.OpResolverType


def _explain_import_error(e: BaseException) -> str:
    """Say why a runtime is unusable; name the NumPy 1.x/2.x ABI break (tflite-runtime 2.14 is
    built against NumPy 1.x and fails with ``_ARRAY_API not found`` under NumPy 2) when it is that."""
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 5:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    lines = [f"{type(x).__name__}: {first_line(x)}" for x in chain]
    abi = [line for line in lines if any(marker in line for marker in _NUMPY_ABI)]
    if abi:
        return (f"built against NumPy 1.x, so it cannot run with NumPy {np.__version__} installed "
                f"({abi[-1]}); use ai-edge-litert, which supports NumPy 2, or install 'numpy<2'")
    text = " <- ".join(lines)
    if isinstance(e, ModuleNotFoundError):
        return f"not installed ({e})"
    return text


@dataclass(frozen=True)
class _Port:
    """One input or output: its public name, the interpreter's tensor index, and the
    quantization to apply on the way in/out (only with ``dequantize=True``)."""

    name: str
    index: int
    raw_dtype: np.dtype
    convert: Quantization | None


class _Slot:
    """One interpreter of the pool, with the input shapes it is currently allocated for."""

    __slots__ = ("allocate", "allocated", "get", "interpreter", "invoke", "resize", "set", "shapes",
                 "wrapper")

    def __init__(self, interpreter: Any, n_inputs: int) -> None:
        self.interpreter = interpreter
        # The C++ wrapper's methods, as SignatureRunner itself calls them: they take a subgraph
        # index (the public set_tensor/invoke only reach subgraph 0) and skip per-call checks.
        self.wrapper = w = interpreter._interpreter
        self.set, self.get, self.invoke = w.SetTensor, w.GetTensor, w.Invoke
        self.resize, self.allocate = w.ResizeInputTensor, w.AllocateTensors
        self.shapes: list[tuple[int, ...] | None] = [None] * n_inputs
        self.allocated = False


class TFLiteBackend(Backend):
    name = "tflite"
    formats = ("tflite",)
    extra = "tflite"
    thread_safe = True  # each call runs on an interpreter of its own (see _Slot / pool)
    distributions = ("ai-edge-litert", "ai-edge-litert-nightly", "tflite-runtime", "tensorflow",
                     "tensorflow-cpu")
    priority = 40  # beside onnxruntime: they never compete for one artifact
    option_names = ("signature", "dequantize", "xnnpack", "pool")

    @classmethod
    def runtime_version(cls) -> str:
        return runtime().version

    def __init__(
        self,
        source: ModelSource,
        *,
        threads: int | None = None,
        signature: str | None = None,
        dequantize: bool = False,
        xnnpack: bool = True,
        pool: int | None = None,
    ) -> None:
        rt = runtime()
        self._runtime = rt
        pool = check_threads(pool, "pool", warn_above_usable=False,  # interpreters: bounded like threads
                             default="usable CPUs // threads")
        dequantize = check_bool(dequantize, "dequantize")
        xnnpack = check_bool(xnnpack, "xnnpack")
        if signature is not None and not isinstance(signature, str):
            raise InvalidArgument(f"signature must be a signature key (str) or None, got {signature!r}")
        self.threads = threads if threads is not None else usable_cpus()
        # Never more compute threads than CPUs: with the default threads (all of them) one
        # interpreter serves calls in turn; with threads=1 there is one interpreter per CPU.
        self.pool_size = pool if pool is not None else max(1, usable_cpus() // self.threads)
        self.dequantize = dequantize
        self._xnnpack_requested = xnnpack
        self._label = source.label
        self._path = str(source.path) if source.path is not None else None
        self._content = None if source.path is not None else source.read_bytes()

        first = self._new_interpreter()
        try:
            out_ports = self._read_ports(first, signature)
        except DeployKitError:
            raise
        except (ValueError, RuntimeError, KeyError, IndexError, TypeError) as e:
            # a damaged file whose names or tables the runtime's binding cannot read (e.g. a
            # tensor name that is not UTF-8)
            raise ModelLoadError(f"{self._label}: the model's tensor tables cannot be read "
                                 f"({type(e).__name__}: {e}); the file is damaged or not a TFLite "
                                 "model") from e
        self._out_all = [(p.index, p.convert) for p in out_ports]
        self._out_by_name = {p.name: (p.index, p.convert) for p in out_ports}
        self._dynamic = [k for k, s in enumerate(self.inputs) if not s.is_static]
        self._quant_in = any(p.convert is not None for p in self._in)
        self._in_plain = [(p.name, p.index) for p in self._in]

        slot = _Slot(first, len(self._in))
        self._xnnpack: bool | None = None
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._count = 0
        self._grow = threading.Lock()
        if self._allocate_at_load(slot):
            self._idle.put(slot)
            self._count = 1

    # -- loading ---------------------------------------------------------------------------
    def _new_interpreter(self) -> Any:
        mod = self._runtime.module
        resolver = mod.OpResolverType.AUTO if self._xnnpack_requested \
            else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        where = {"model_path": self._path} if self._path is not None \
            else {"model_content": self._content}
        try:
            with runtime_chatter.silenced(log):
                return mod.Interpreter(**where, num_threads=self.threads,
                                       experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{self._label}: {self._runtime.package} {self._runtime.version} "
                                 f"cannot load it: {first_line(e)}") from e

    def _choose_signature(self, asked: str | None) -> str | None:
        if asked is not None:
            if asked not in self.signatures:
                have = ", ".join(map(repr, self.signatures)) or "none (tensors are used directly)"
                raise ModelLoadError(f"{self._label}: no signature {asked!r}; its signatures: {have}")
            return asked
        if not self.signatures:
            return None
        chosen = "serving_default" if "serving_default" in self.signatures else self.signatures[0]
        if len(self.signatures) > 1:
            log.info("%s has signatures %s; using %r (pass signature=... for another)",
                     self._label, self.signatures, chosen)
        return chosen

    def _model_order(self, names: Mapping[str, int], interp: Any,
                     *, outputs: bool) -> list[tuple[str, int]]:
        """Signature entries in the subgraph's own input/output order (the runtime hands them
        over as a name-sorted map); tensor-index order where the subgraph's list is not exposed."""
        items = [(n, int(i)) for n, i in names.items()]
        order: list[int] = []
        if self._subgraph == 0:
            w = interp._interpreter
            order = [int(i) for i in (w.OutputIndices() if outputs else w.InputIndices())]
        rank = {index: k for k, index in enumerate(order)}
        return sorted(items, key=lambda item: (rank.get(item[1], len(rank)), item[1]))

    def _read_ports(self, first: Any, signature: str | None) -> list[_Port]:
        """Signatures, then the inputs' and outputs' specs and ports; the output ports returned."""
        sigs = first._get_full_signature_list() if hasattr(first, "_get_full_signature_list") \
            else {}
        self.signatures: list[str] = list(sigs)
        self.signature = self._choose_signature(signature)
        if self.signature is None:
            self._subgraph = 0
            ins = [(d["name"], d["index"]) for d in first.get_input_details()]
            outs = [(d["name"], d["index"]) for d in first.get_output_details()]
        else:
            self._subgraph = int(first._interpreter.GetSubgraphIndexFromSignature(self.signature))
            sig = sigs[self.signature]
            ins = self._model_order(sig["inputs"], first, outputs=False)
            outs = self._model_order(sig["outputs"], first, outputs=True)
        self.inputs, self._in = self._ports(first, ins, "input")
        self.outputs, out_ports = self._ports(first, outs, "output")
        return out_ports

    def _ports(self, interp: Any, entries: list[tuple[str, int]],
               kind: str) -> tuple[list[TensorSpec], list[_Port]]:
        specs: list[TensorSpec] = []
        ports: list[_Port] = []
        for k, (name, index) in enumerate(entries):
            d = interp._get_tensor_details(index, self._subgraph)
            name = name or f"{kind}_{k}"
            raw = np.dtype(d["dtype"])
            shape_sig = d.get("shape_signature")
            dims = d["shape"] if shape_sig is None or len(shape_sig) != len(d["shape"]) else shape_sig
            shape = tuple(normalize_dim(int(v)) for v in dims)
            quant = _quantization(d) if raw.kind in "iu" else None
            convert = quant if (quant is not None and self.dequantize) else None
            dtype = np.dtype(np.float32) if convert is not None else raw
            specs.append(TensorSpec(name, shape, dtype, quantization=quant))
            ports.append(_Port(name, int(index), raw, convert))
        return specs, ports

    def _allocate(self, slot: _Slot) -> None:
        """Allocate the slot's tensors. Until that has once succeeded, all subgraphs are allocated
        through the interpreter itself (index -1): only that path applies the default delegates
        (XNNPACK) on every runtime; a subgraph's own allocation skips them on tflite-runtime."""
        if slot.allocated:
            slot.allocate(self._subgraph)
            return
        with runtime_chatter.silenced(log):  # the delegates are created now, and say so on fd 2
            try:
                slot.allocate(-1)  # the primary subgraph, after the delegates are applied
            except Exception:
                if self._subgraph == 0:
                    raise
            if self._subgraph != 0:  # a signature on another subgraph: allocate it too
                slot.allocate(self._subgraph)
        slot.allocated = True

    def _allocate_at_load(self, slot: _Slot) -> bool:
        """Allocate now so that a missing custom op fails at load time, naming the op. A model
        with dynamic inputs may refuse the placeholder size (1) its file stores: that interpreter
        is then dropped (a failed first allocation can leave it without XNNPACK) and the first
        run creates one and allocates it for the real shapes. True when ``slot`` is usable."""
        try:
            self._allocate(slot)
        except Exception as e:
            self._raise_if_custom_op(e)
            if not self._dynamic:
                raise ModelLoadError(f"{self._label}: {self._runtime.package} cannot prepare it: "
                                     f"{first_line(e)}") from e
            log.info("%s: not allocated at load (%s); allocating at the first run",
                     self._label, first_line(e))
            return False
        self._note_delegation(slot)
        return True

    def _raise_if_custom_op(self, e: BaseException) -> None:
        ops = sorted(set(_CUSTOM_OP.findall(str(e))))
        if ops:
            raise ModelLoadError(
                f"{self._label}: uses custom op(s) {', '.join(ops)} that {self._runtime.package} "
                f"{self._runtime.version} does not have; register them with the runtime's "
                "InterpreterWithCustomOps or use a model built from builtin ops only"
            ) from e

    def _note_delegation(self, slot: _Slot) -> None:
        if self._xnnpack is None:
            try:
                self._xnnpack = any(op["op_name"] == "DELEGATE"
                                    for op in slot.interpreter._get_ops_details())
            except Exception:  # older runtimes without _get_ops_details: leave it unknown
                self._xnnpack = None

    # -- running ---------------------------------------------------------------------------
    def _acquire_slow(self) -> _Slot:
        """No idle interpreter: create one if the pool may grow, else wait for one."""
        with self._grow:
            grow = self._count < self.pool_size
            if grow:
                self._count += 1
        if not grow:
            return self._idle.get()
        try:
            return _Slot(self._new_interpreter(), len(self._in))
        except BaseException:
            with self._grow:
                self._count -= 1
            raise

    def _fit(self, slot: _Slot, feeds: Mapping[str, np.ndarray]) -> None:
        """Resize dynamic inputs to the incoming shapes; re-allocate only when one changed."""
        changed = False
        for k in self._dynamic:
            shape = feeds[self._in[k].name].shape
            if slot.shapes[k] != shape:
                slot.resize(self._in[k].index, np.array(shape, np.int32), False, self._subgraph)
                slot.shapes[k] = shape
                changed = True
        if changed or not slot.allocated:
            try:
                self._allocate(slot)
            except Exception as e:
                slot.shapes = [None] * len(self._in)  # state unknown: resize again next time
                self._raise_if_custom_op(e)
                shapes = ", ".join(f"{p.name}{list(feeds[p.name].shape)}" for p in self._in)
                raise BackendError(f"{self._runtime.package} cannot run {self._label} on input "
                                   f"shapes {shapes}: {first_line(e)}") from e
            self._note_delegation(slot)

    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> Sequence[np.ndarray]:
        try:
            slot = self._idle.get_nowait()
        except queue.Empty:
            slot = self._acquire_slow()
        try:
            if self._dynamic or not slot.allocated:
                self._fit(slot, feeds)
            sg = self._subgraph
            put = slot.set
            if self._quant_in:
                for p in self._in:
                    a = feeds[p.name]
                    put(p.index, a if p.convert is None else p.convert.quantize(a, p.raw_dtype), sg)
            else:
                for name, index in self._in_plain:
                    put(index, feeds[name], sg)
            slot.invoke(sg)
            get = slot.get
            outs = self._out_all if output_names is None \
                else [self._out_by_name[n] for n in output_names]
            return [get(i, sg) if q is None else q.dequantize(get(i, sg)) for i, q in outs]
        finally:
            self._idle.put(slot)

    def info(self) -> dict[str, Any]:
        return {
            "runtime": self._runtime.package,
            "version": self._runtime.version,
            "threads": self.threads,
            "xnnpack": self._xnnpack if self._xnnpack_requested else False,
            "signature": self.signature,
            "signatures": list(self.signatures),
            "dequantize": self.dequantize,
            "pool": self.pool_size,
            "interpreters": self._count,
        }

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break


def _quantization(details: Mapping[str, Any]) -> Quantization | None:
    q = details.get("quantization_parameters") or {}
    scales = [float(s) for s in q.get("scales", ())]
    if not scales:
        return None
    zeros = [int(z) for z in q.get("zero_points", ())] or [0] * len(scales)
    axis = int(q.get("quantized_dimension", 0)) if len(scales) > 1 else None
    return Quantization(tuple(scales), tuple(zeros), axis)
