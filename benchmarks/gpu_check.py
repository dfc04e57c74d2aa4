"""The prepared run for a machine with an NVIDIA GPU (issue 15): what that machine can check, in one
go, under 8 minutes — each step says what it found or why it was skipped, and the script never
stops at the first missing piece.

1. the probe: the GPUs deploykit sees (NVML or nvidia-smi) and the runtimes installed;
2. cuda-python: a tensor round-tripped host -> device -> host on a stream (memory and streams);
3. where TensorRT imports: the digits demo model and a small conv net built into engines (fp32 and
   fp16, through deploykit's cache: second load must hit it), outputs compared with ONNX Runtime on
   the CPU — fp32 within 1e-3 of the output scale, fp16 within 1e-2 — and latency vs ORT CPU;
   a shape outside the profile must be an InputMismatch;
4. where onnxruntime-gpu is installed: the CUDA provider on the same models.

    python benchmarks/gpu_check.py [--out gpu-check.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deploykit as dk  # noqa: E402
from deploykit.demo import MODEL_PATH, load_test_data  # noqa: E402

RESULTS: dict[str, Any] = {}


def step(name: str) -> Any:
    """Run the decorated check, record what it returned or raised, and go on."""

    def wrap(fn: Any) -> Any:
        start = time.perf_counter()
        try:
            RESULTS[name] = {"ok": True, "found": fn()}
        except Exception as e:  # a check that cannot run says why; the next one still runs
            RESULTS[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        RESULTS[name]["seconds"] = round(time.perf_counter() - start, 2)
        print(
            f"[{'ok' if RESULTS[name]['ok'] else 'FAILED'}] {name}: "
            f"{json.dumps(RESULTS[name].get('found', RESULTS[name].get('error')), default=str)[:400]}",
            flush=True,
        )
        return fn

    return wrap


def median_ms(engine: dk.Engine, feeds: dict[str, np.ndarray], runs: int = 50) -> float:
    for _ in range(5):
        engine.run(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def conv_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.1, (8, 16, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 64, 64])],
        [w1, w2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))

    @step("probe")
    def _probe() -> Any:
        report = dk.probe()
        return {
            "gpus": [str(g) for g in report.gpus],
            "gpu_probe": report.gpu_probe,
            "backends": {k: (v.version or v.reason) for k, v in dk.available_backends().items()},
        }

    @step("cuda-python round trip")
    def _cuda() -> Any:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        host = np.arange(1 << 20, dtype=np.float32)
        back = np.empty_like(host)
        err, stream = cudart.cudaStreamCreate()
        assert int(err) == 0, f"cudaStreamCreate: {err}"
        err, ptr = cudart.cudaMalloc(host.nbytes)
        assert int(err) == 0, f"cudaMalloc: {err}"
        cudart.cudaMemcpyAsync(
            ptr, host.ctypes.data, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
        )
        cudart.cudaMemcpyAsync(
            back.ctypes.data, ptr, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
        )
        cudart.cudaStreamSynchronize(stream)
        cudart.cudaFree(ptr)
        cudart.cudaStreamDestroy(stream)
        assert np.array_equal(host, back), "the tensor came back changed"
        return {"bytes": host.nbytes, "equal": True}

    models = {
        "digits": (MODEL_PATH, {"images": load_test_data()[0][:8]}),
        "conv": (
            conv_model(work / "conv.onnx"),
            {"x": np.random.default_rng(1).random((4, 3, 64, 64), dtype=np.float32)},
        ),
    }
    for name, (path, feeds) in models.items():
        for fp16, tol in ((False, 1e-3), (True, 1e-2)):
            label = f"tensorrt {name} {'fp16' if fp16 else 'fp32'}"

            @step(label)
            def _trt(path: Path = path, feeds: dict = feeds, fp16: bool = fp16, tol: float = tol) -> Any:
                cpu = dk.load(path, "onnxruntime")
                want = cpu.run(feeds)
                start = time.perf_counter()
                trt = dk.load(path, "tensorrt", fp16=fp16, rebuild=True)
                built = time.perf_counter() - start
                start = time.perf_counter()
                again = dk.load(path, "tensorrt", fp16=fp16)
                cached = time.perf_counter() - start
                got = trt.run(feeds)
                errors = {
                    k: float(
                        np.max(np.abs(got[k].astype(np.float64) - want[k]))
                        / max(1.0, float(np.max(np.abs(want[k]))))
                    )
                    for k in want
                    if want[k].dtype.kind == "f"
                }
                assert all(e <= tol for e in errors.values()), f"relative errors {errors} over {tol}"
                assert again.info["cache_hit"], "the second load did not hit the engine cache"
                big = {k: np.concatenate([v] * 20) for k, v in feeds.items()}  # batch past the profile's 32
                try:
                    trt.run(big)
                    outside = "ran (the profile was wider than expected)"
                except dk.InputMismatch as e:
                    outside = f"InputMismatch: {str(e)[:120]}"
                return {
                    "relative_error": errors,
                    "build_s": round(built, 1),
                    "cached_load_s": round(cached, 2),
                    "ms_tensorrt": round(median_ms(trt, feeds), 3),
                    "ms_ort_cpu": round(median_ms(cpu, feeds), 3),
                    "outside_profile": outside,
                    "info": trt.info,
                }

        @step(f"onnxruntime CUDA {name}")
        def _ort(path: Path = path, feeds: dict = feeds) -> Any:
            gpu = dk.load(path, "onnxruntime", providers=["CUDAExecutionProvider"], strict=True)
            cpu = dk.load(path, "onnxruntime")
            want, got = cpu.run(feeds), gpu.run(feeds)
            return {
                "max_abs": {
                    k: float(np.max(np.abs(got[k].astype(np.float64) - want[k])))
                    for k in want
                    if want[k].dtype.kind == "f"
                },
                "ms_cuda": round(median_ms(gpu, feeds), 3),
                "ms_cpu": round(median_ms(cpu, feeds), 3),
            }

    args.out.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    print(f"written {args.out}")
    return 0 if all(r["ok"] for r in RESULTS.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
