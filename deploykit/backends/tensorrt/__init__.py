"""The TensorRT backend (extra ``deploykit[tensorrt]``): TensorRT 10's named-tensor API, CUDA memory
and streams through NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``; docs/tensorrt.md says why
not pycuda), engines built from ONNX with the parser and cached on disk (``cache.py``), optimization
profiles from the model's specs (``profiles.py``), one execution context per concurrent caller.

Not verified on real TensorRT in this project's CI (no GPU, and the ``tensorrt`` wheel fetches its
libraries from a host these machines cannot reach): what is tested here is everything that needs
no GPU — profiles, cache keys, options, dtypes, the errors and the plan's reasons. ``benchmarks/
gpu_check.py`` is the prepared run for a machine with one.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ...errors import BackendError, BackendUnavailable, InvalidArgument, ModelLoadError
from ...model import ModelSource
from ...spec import TensorSpec
from ..base import NVIDIA_GPU, Backend
from . import cache
from .options import BuildOptions, build_options, numpy_dtype
from .profiles import Profile, derive, select

log = logging.getLogger("deploykit")

INSTALL = ("pip install 'deploykit[tensorrt]' (tensorrt and cuda-python; needs an NVIDIA GPU, its driver, "
           "and TensorRT's libraries, which the tensorrt wheel downloads from NVIDIA's index)")
DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")


def _modules() -> tuple[Any, Any]:
    """``tensorrt`` and ``cuda.bindings.runtime``, or ``BackendUnavailable`` with the install line."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"TensorRT is not installed: {INSTALL} ({e})") from e
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6 named it so
        except ImportError as e:
            raise BackendUnavailable(f"cuda-python is not installed: {INSTALL} ({e})") from e
    return trt, cudart


def _check(result: Any, what: str) -> Any:
    """A cuda-python call's (error, value...) tuple: the value, or ``BackendError`` naming the call."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise BackendError(f"CUDA {what} failed: {error}")
    return values[0] if len(values) == 1 else tuple(values)


class _Context:
    """One execution context with its stream and device buffers (grown as shapes grow)."""

    def __init__(self, engine: Any, cudart: Any) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self.profile = 0

    def buffer(self, cudart: Any, name: str, nbytes: int) -> int:
        pointer, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _check(cudart.cudaFree(pointer), "cudaFree")
            pointer = _check(cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
            self.buffers[name] = (pointer, nbytes)
        return pointer

    def release(self, cudart: Any) -> None:
        for pointer, _ in self.buffers.values():
            cudart.cudaFree(pointer)
        cudart.cudaStreamDestroy(self.stream)


class TensorRTBackend(Backend):
    name = "tensorrt"
    formats = ("onnx", "tensorrt")
    extra = "tensorrt"
    device_kind = NVIDIA_GPU
    distributions = DISTRIBUTIONS
    priority = 20  # before onnxruntime (40): on an NVIDIA GPU with TensorRT, auto prefers it for ONNX
    option_names = ("fp16", "int8", "tf32", "workspace_mb", "opt_level", "timing_cache", "calibration_cache",
                    "shapes", "dims", "device_id", "contexts", "rebuild")
    thread_safe = True  # a pool of execution contexts, one per concurrent caller

    @classmethod
    def runtime_version(cls) -> str:
        trt, _ = _modules()
        return str(trt.__version__)

    def __init__(self, source: ModelSource, *, threads: int | None = None, **options: Any) -> None:
        trt, cudart = _modules()
        self._trt, self._cudart = trt, cudart
        self.build = build_options(options)
        device_id = options.get("device_id", 0)
        if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
            raise InvalidArgument(f"device_id must be a GPU index, got {device_id!r}")
        contexts = options.get("contexts", 2)  # checked before a build that may take minutes
        if isinstance(contexts, bool) or not isinstance(contexts, int) or contexts < 1:
            raise InvalidArgument(f"contexts must be a positive number of execution contexts, got "
                                  f"{contexts!r}")
        self._device_id = device_id
        count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if device_id >= count:
            raise BackendUnavailable(f"no NVIDIA GPU {device_id} (CUDA sees {count})")
        _check(cudart.cudaSetDevice(device_id), "cudaSetDevice")
        self.device = f"cuda:{device_id}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        plan, self.cache_hit, self.profiles = self._plan(source, options, device_id)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ModelLoadError(f"{source.label}: TensorRT could not deserialize the engine (built by "
                                 "another TensorRT version or for another GPU?)")
        self.inputs, self.outputs = self._specs()
        self._pool: queue.Queue[_Context] = queue.Queue()
        try:
            for _ in range(contexts):
                self._pool.put(_Context(self._engine, cudart))
        except BaseException:
            self.close()
            raise
        self._contexts = contexts

    # -- the engine: from the cache, or built ---------------------------------------------------
    def _plan(self, source: ModelSource, options: Mapping[str, Any], device_id: int
              ) -> tuple[bytes, bool, list[Profile]]:
        if source.format == "tensorrt":
            return source.read_bytes(), True, []
        from ...model import onnx_io_specs
        inputs, _ = onnx_io_specs(source.proto)
        profile = derive(inputs, options.get("shapes"), options.get("dims"))
        props = _check(self._cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
        gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        capability = f"{props.major}.{props.minor}"
        key = cache.cache_key(source.sha256(), self._trt.__version__, gpu, capability, self.build.key(),
                              [profile.to_dict()])
        path = cache.engine_path(key)
        plan = None if options.get("rebuild") else cache.load(path, key)
        if plan is not None:
            log.info("%s: TensorRT engine from the cache (%s)", source.label, path.name)
            return plan, True, [profile]
        log.info("%s: TensorRT engine not cached (%s); building it for %s (sm %s) — this can take minutes",
                 source.label, path.name, gpu, capability)
        from .build import build_engine
        start = time.perf_counter()
        plan = build_engine(self._trt, self._logger, source, self.build, [profile])
        log.info("%s: TensorRT engine built in %.1f s; cached at %s", source.label,
                 time.perf_counter() - start, path)
        cache.store(path, key, plan, {"model": source.label, "tensorrt": self._trt.__version__, "gpu": gpu})
        return plan, False, [profile]

    def _specs(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        trt, engine = self._trt, self._engine
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = numpy_dtype(str(engine.get_tensor_dtype(name)).split(".")[-1], name)
            shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, shape, dtype)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        if not self.profiles:  # a serialized engine: its own profiles, read back
            self.profiles = [Profile({s.name: tuple(tuple(int(d) for d in x) for x in  # type: ignore[misc]
                                                    engine.get_tensor_profile_shape(s.name, p))
                                      for s in inputs}) for p in range(engine.num_optimization_profiles)]
        return inputs, outputs

    # -- running ---------------------------------------------------------------------------------
    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> list[np.ndarray]:
        cudart = self._cudart
        _check(cudart.cudaSetDevice(self._device_id), "cudaSetDevice")  # per calling thread in CUDA
        shapes = {name: tuple(int(d) for d in value.shape) for name, value in feeds.items()}
        profile = select(self.profiles, shapes) if self.profiles else 0
        ctx = self._pool.get()
        try:
            context = ctx.context
            if ctx.profile != profile:
                context.set_optimization_profile_async(profile, ctx.stream)
                ctx.profile = profile
            for name, value in feeds.items():
                context.set_input_shape(name, value.shape)
                pointer = ctx.buffer(cudart, name, value.nbytes)
                _check(cudart.cudaMemcpyAsync(pointer, value.ctypes.data, value.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, ctx.stream),
                       "cudaMemcpyAsync (to the GPU)")
                context.set_tensor_address(name, pointer)
            results = {}
            for spec in self.outputs:
                shape = tuple(context.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise BackendError(f"output {spec.name}: its shape depends on the data ({list(shape)}); "
                                       "this adapter needs outputs whose shapes follow from the inputs")
                host = np.empty(shape, spec.dtype)
                context.set_tensor_address(spec.name, ctx.buffer(cudart, spec.name, host.nbytes))
                results[spec.name] = host
            if not context.execute_async_v3(ctx.stream):
                raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for name, host in results.items():
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, ctx.buffers[name][0], host.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, ctx.stream),
                       "cudaMemcpyAsync (from the GPU)")
            _check(cudart.cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize")
        finally:
            self._pool.put(ctx)
        names = output_names if output_names is not None else [s.name for s in self.outputs]
        return [results[n] for n in names]

    def info(self) -> dict[str, Any]:
        return {"tensorrt": self._trt.__version__, "cache_hit": self.cache_hit, "contexts": self._contexts,
                "build": self.build.key(), "profiles": [p.to_dict() for p in self.profiles]}

    def close(self) -> None:
        self._cudart.cudaSetDevice(self._device_id)
        pool = getattr(self, "_pool", None)
        while pool is not None and not pool.empty():
            pool.get().release(self._cudart)

    @classmethod
    def candidates(cls, source: ModelSource, machine: Any, options: Mapping[str, Any]) -> list[Any]:
        """On the first NVIDIA GPU; an ONNX model whose symbolic dimensions have no range (beyond the
        batch) is rejected here, naming them, rather than failing at build time."""
        found = super().candidates(source, machine, options)
        if found and found[0].reason is None and source.format == "onnx":
            from ...model import onnx_io_specs
            try:
                derive(onnx_io_specs(source.proto)[0], options.get("shapes"), options.get("dims"))
            except InvalidArgument as e:
                return [replace(found[0], reason=f"no optimization profile: {e}")]
        return found

    @classmethod
    def probe(cls) -> dict[str, Any]:
        try:
            return {"tensorrt": cls.runtime_version()}
        except BackendUnavailable as e:
            return {"error": str(e)}


__all__ = ["DISTRIBUTIONS", "INSTALL", "BuildOptions", "TensorRTBackend"]
