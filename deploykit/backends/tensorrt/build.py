"""An ONNX model built into a serialized TensorRT engine: the ONNX parser, the builder config from
``BuildOptions``, one optimization profile per ``Profile``, the timing cache reused across builds,
and the builder's progress logged as it goes (phases with elapsed time) — a build can take minutes,
and a silent one looks hung."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ...errors import InvalidArgument, ModelLoadError
from ...model import ModelSource
from .options import BuildOptions
from .profiles import Profile

log = logging.getLogger("deploykit")


def _monitor(trt: Any) -> Any:
    """A ``trt.IProgressMonitor`` that logs each top-level phase's start and end with elapsed time."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.start = time.perf_counter()
            self.began: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.began[phase_name] = time.perf_counter()
            if parent_phase is None:
                log.info("TensorRT build: %s (%d steps) at %.1f s", phase_name, num_steps,
                         time.perf_counter() - self.start)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            took = time.perf_counter() - self.began.pop(phase_name, time.perf_counter())
            if took > 1.0:
                log.info("TensorRT build: %s done in %.1f s", phase_name, took)

    return Monitor()


def build_engine(trt: Any, logger: Any, source: ModelSource, options: BuildOptions,
                 profiles: list[Profile]) -> bytes:
    """The serialized engine for ``source`` (an ONNX model) built with ``options`` and ``profiles``."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(source.path)) if source.path is not None else \
        parser.parse(source.read_bytes())
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 5)))
        raise ModelLoadError(f"{source.label}: TensorRT's ONNX parser refused the model: {errors}")
    config = builder.create_builder_config()
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.int8:
        if options.calibration_cache is None or not Path(options.calibration_cache).is_file():
            raise InvalidArgument("int8 needs a calibration cache file (calibration_cache=...): TensorRT "
                                  "10 deprecates implicit calibration; quantize the ONNX model (dk.quantize) "
                                  "for explicit int8 instead")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _CacheCalibrator(trt, Path(options.calibration_cache))
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    config.builder_optimization_level = options.opt_level
    timing = _timing_cache(config, options.timing_cache)
    for profile in profiles:
        shape_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile.ranges.items():
            shape_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(shape_profile)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _monitor(trt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        # a ModelLoadError lets dk.load go on to the plan's next candidate (onnxruntime)
        raise ModelLoadError(f"{source.label}: TensorRT could not build an engine (its log says why)")
    if timing is not None and options.timing_cache is not None:
        Path(options.timing_cache).write_bytes(bytes(timing.serialize()))
    return bytes(serialized)


def _timing_cache(config: Any, path: str | None) -> Any:
    if path is None:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=True)  # a cache from another GPU is rebuilt, not fatal
    return cache


class _CacheCalibrator:
    """An int8 calibrator that only replays a calibration cache (no data on the GPU)."""

    def __new__(cls, trt: Any, path: Path) -> Any:
        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self) -> None:
                trt.IInt8EntropyCalibrator2.__init__(self)

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: list[str]) -> None:
                return None

            def read_calibration_cache(self) -> bytes:
                return path.read_bytes()

            def write_calibration_cache(self, cache: bytes) -> None:
                return None

        return Calibrator()


__all__ = ["build_engine"]
