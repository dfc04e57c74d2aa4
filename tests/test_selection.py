"""Selection by rule: the policy on injected hardware reports (an H100 host, CPU-only builds, missing
runtimes), and dk.load(backend="auto") on this machine: engine.plan, logging, fallbacks, strict, the
DEPLOYKIT_BACKEND override. Nothing about this machine's hardware is faked."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import deploykit as dk
from deploykit.gpus import GpuInfo, gpu_from_nvml
from deploykit.model import open_model
from deploykit.selection import ENV_BACKEND, Candidate, Plan, make_plan
from tests import models

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
#: NVML's answers on the H100 host this project's GPU checks ran on (see tests/test_hardware.py).
H100: GpuInfo = gpu_from_nvml(0, "NVIDIA H100 80GB HBM3", 85520809984, (9, 0), "580.159.04",
                              "GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7")
GPU_HOST_RUNTIMES = {"onnxruntime-gpu": "1.22.0", "tensorrt": "10.9.0", "numpy": "2.2.0", "onnx": "1.18.0"}
HAS_NVIDIA_DRIVER = any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl"))


def report(*, gpus: tuple[GpuInfo, ...] = (), runtimes: dict[str, str] | None = None,
           providers: tuple[str, ...] = (CPU,)) -> dk.HardwareReport:
    """A report of this machine's CPU and memory with the GPUs, runtimes and providers given."""
    here = dk.probe()
    return dk.HardwareReport(cpu=here.cpu, memory=here.memory, gpus=gpus,
                             gpu_probe="NVML" if gpus else "injected: no GPU",
                             runtimes=GPU_HOST_RUNTIMES if runtimes is None else runtimes,
                             backend_facts={"onnxruntime": {"providers": list(providers), "error": None}})


def labels(cands: list[Candidate]) -> list[str]:
    return [c.label for c in cands]


def reasons(plan: Plan) -> dict[str, str | None]:
    return {c.label: c.reason for c in plan.rejected}


def global_lp_pool() -> onnx.ModelProto:
    """GlobalLpPool at opset 22: onnxruntime 1.32 has no kernel for it, the numpy backend has one."""
    graph = helper.make_graph([helper.make_node("GlobalLpPool", ["x"], ["y"])], "lp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    return model


# -- the policy on injected reports ---------------------------------------------------------------
def test_h100_host_static_model_prefers_tensorrt_provider() -> None:
    plan = make_plan(open_model(models.fixed_image()), report(gpus=(H100,), providers=(TRT, CUDA, CPU)))
    assert labels(plan.candidates) == ["tensorrt on cuda:0", "onnxruntime[Tensorrt, CUDA, CPU] on cuda:0",
                                       "onnxruntime[CUDA, CPU] on cuda:0", "onnxruntime[CPU] on cpu",
                                       "numpy on cpu"]
    assert (plan.backend, plan.device, plan.providers) == ("tensorrt", "cuda:0", ())  # deploykit's adapter
    assert plan.candidates[1].options() == {"providers": [TRT, CUDA, CPU]}
    rejected = reasons(plan)
    assert rejected["tflite on cpu"] == "loads tflite models, not onnx"
    assert plan.decided_by == "rule" and plan.hardware and len(plan.hardware) == 16


def test_h100_host_dynamic_model_skips_tensorrt_provider() -> None:
    plan = make_plan(open_model(models.dynamic_add()), report(gpus=(H100,), providers=(TRT, CUDA, CPU)))
    # deploykit's TensorRT adapter builds one profile for a symbolic batch; ORT's provider would rebuild
    assert labels(plan.candidates)[:2] == ["tensorrt on cuda:0", "onnxruntime[CUDA, CPU] on cuda:0"]
    why = reasons(plan)["onnxruntime[Tensorrt, CUDA, CPU] on cuda:0"]
    assert why is not None
    assert why.startswith("dynamic input shapes (x: float32[N,3], y: float32[N,3]): TensorRT builds")


def test_tensorrt_provider_needs_tensorrt_installed() -> None:
    runtimes = {k: v for k, v in GPU_HOST_RUNTIMES.items() if k != "tensorrt"}
    plan = make_plan(open_model(models.fixed_image()),
                     report(gpus=(H100,), runtimes=runtimes, providers=(TRT, CUDA, CPU)))
    assert plan.candidates[0].label == "onnxruntime[CUDA, CPU] on cuda:0"
    why = reasons(plan)["onnxruntime[Tensorrt, CUDA, CPU] on cuda:0"]
    assert why is not None and why.startswith("TensorRT is not installed (pip install tensorrt)")


def test_cpu_only_onnxruntime_on_a_gpu_host() -> None:
    plan = make_plan(open_model(models.fixed_image()),
                     report(gpus=(H100,), runtimes={"onnxruntime": "1.30.0", "numpy": "2.2.0"},
                            providers=("AzureExecutionProvider", CPU)))
    assert labels(plan.candidates) == ["onnxruntime[CPU] on cpu", "numpy on cpu"]
    assert reasons(plan)["onnxruntime[CUDA, CPU] on cuda:0"] == (
        "onnxruntime 1.30.0 (onnxruntime) has no CUDAExecutionProvider (it has AzureExecutionProvider, "
        "CPUExecutionProvider); install onnxruntime-gpu")


def test_no_gpu_rejects_every_gpu_candidate_with_the_reason() -> None:
    plan = make_plan(open_model(models.fixed_image()), report(providers=(TRT, CUDA, CPU)))
    assert labels(plan.candidates) == ["onnxruntime[CPU] on cpu", "numpy on cpu"]
    for label in ("onnxruntime[Tensorrt, CUDA, CPU] on cuda:0", "onnxruntime[CUDA, CPU] on cuda:0"):
        assert reasons(plan)[label] == "no NVIDIA GPU (injected: no GPU)"


def test_missing_runtime_is_a_rejection_not_an_import() -> None:
    hw = report(runtimes={"numpy": "2.2.0"}, providers=())
    plan = make_plan(open_model(models.fixed_image()), hw)
    assert labels(plan.candidates) == ["numpy on cpu"]
    assert reasons(plan)["onnxruntime on cpu"] == "not installed (pip install 'deploykit[onnxruntime]')"


def test_tflite_model(zoo_path) -> None:
    source = open_model(zoo_path("oww_embedding_tflite"))
    plan = make_plan(source, report(gpus=(H100,), runtimes={"ai-edge-litert": "2.3.0", "onnxruntime": "1"}))
    assert labels(plan.candidates) == ["tflite on cpu"]
    assert reasons(plan) == {"onnxruntime on cpu": "loads onnx models, not tflite",
                             "numpy on cpu": "loads onnx models, not tflite",
                             "tensorrt on cuda:0": "loads onnx/tensorrt models, not tflite"}
    none = make_plan(source, report(runtimes={"onnxruntime": "1"}))
    assert none.candidates == [] and reasons(none)["tflite on cpu"] == (
        "not installed (pip install 'deploykit[tflite]')")


def test_caller_options_shape_the_candidates() -> None:
    source = open_model(models.fixed_image())
    plan = make_plan(source, report(gpus=(H100,), providers=(TRT, CUDA, CPU)),
                     options={"providers": [("CUDAExecutionProvider", {"device_id": 0})]})
    assert labels(plan.candidates) == ["onnxruntime[CUDA] on cuda:0"]
    assert reasons(plan)["numpy on cpu"] == "takes no option(s) providers"


def test_explicit_backend_is_a_one_candidate_plan() -> None:
    source = open_model(models.fixed_image())
    plan = make_plan(source, backend="ORT")
    assert labels(plan.candidates) == ["onnxruntime on cpu"] and plan.rejected == []
    assert plan.requested == "onnxruntime" and plan.decided_by == "caller"
    with pytest.raises(dk.ModelLoadError, match=r"backend 'tflite' loads tflite models, not onnx"):
        make_plan(source, backend="tflite")
    with pytest.raises(dk.UnknownBackend, match=r"unknown backend 'tvm'"):
        make_plan(source, backend="tvm")


def test_a_tuner_can_reorder_the_plan() -> None:
    plan = make_plan(open_model(models.fixed_image()), report(gpus=(H100,), providers=(TRT, CUDA, CPU)))
    engine_trt, trt, cuda, cpu, ref = plan.candidates
    timed = [replace(cuda, measured_ms=0.21), replace(trt, measured_ms=0.34), replace(cpu, measured_ms=0.9)]
    tuned = plan.reordered(sorted(timed, key=lambda c: c.measured_ms or 0),
                           rejected=[replace(engine_trt, reason="failed to build"),
                                     replace(ref, reason="slower than 10x the fastest")])
    assert labels(tuned.candidates) == [cuda.label, trt.label, cpu.label]
    assert tuned.decided_by == "measurement" and tuned.rejected[-1].label == "numpy on cpu"
    assert plan.decided_by == "rule" and len(plan.candidates) == 5  # the rule's plan is unchanged
    assert "(0.21 ms)" in tuned.explain()
    with pytest.raises(ValueError, match=r"not viable candidates of this plan: onnxruntime\[CPU\] on cuda:7"):
        plan.reordered([replace(cpu, device="cuda:7")])
    with pytest.raises(ValueError, match=r"rejected candidates need a reason: numpy on cpu"):
        plan.reordered([cpu], rejected=[ref])


def test_plan_to_dict_and_text() -> None:
    plan = make_plan(open_model(models.dynamic_add()), report(gpus=(H100,), providers=(TRT, CUDA, CPU)))
    data = plan.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["candidates"][1] == {"backend": "onnxruntime", "device": "cuda:0",
                                     "providers": [CUDA, CPU], "reason": None, "measured_ms": None}
    text = plan.explain()
    assert text.splitlines()[0] == ("plan for <onnx.ModelProto> (onnx), backend='auto', decided by rule")
    for cand in plan.rejected:
        assert f"rejected  {cand.label}: {cand.reason}" in text
    assert plan.summary().startswith("<onnx.ModelProto>: will try tensorrt on cuda:0, onnxruntime[CUDA, CPU] "
                                     "on cuda:0, ")


# -- dk.load on this machine ----------------------------------------------------------------------
@pytest.mark.skipif(HAS_NVIDIA_DRIVER, reason="this machine has an NVIDIA driver")
def test_auto_here_skips_gpu_paths_with_reasons(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    with caplog.at_level(logging.INFO, logger="deploykit"):
        engine = dk.load(models.fixed_image())
    plan = engine.plan
    assert plan is not None and plan.chosen is not None
    assert plan.chosen.label == "onnxruntime[CPU] on cpu" and plan.failed == [] and not plan.fell_back
    gpu = [c for c in plan.rejected if c.device.startswith("cuda")]
    assert {c.label for c in gpu} >= {"onnxruntime[Tensorrt, CUDA, CPU] on cuda:0",
                                      "onnxruntime[CUDA, CPU] on cuda:0"}
    probe_reason = dk.probe().gpu_probe
    for c in gpu:
        assert c.reason in ("deploykit has no adapter for it yet", f"no NVIDIA GPU ({probe_reason})") or (
            c.backend == "tensorrt" and c.reason is not None and c.reason.startswith("not installed"))
    logged = [r.getMessage() for r in caplog.records if r.name == "deploykit"]
    assert "<onnx.ModelProto>: runs on onnxruntime[CPU] on cpu (by rule) — rejected tensorrt on cuda:0 (" \
        in "\n".join(logged)


def test_explicit_backend_plan_records_what_runs() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    engine = dk.load(models.fixed_image(), backend="onnxruntime")
    assert engine.plan is not None and engine.plan.chosen is not None
    assert engine.plan.chosen.providers == tuple(engine.info["providers"])
    assert engine.plan.chosen.device == engine.device and engine.plan.decided_by == "caller"
    assert dk.load(models.fixed_image(), backend="numpy").plan.chosen == Candidate("numpy")


def test_failed_candidate_falls_through_or_is_refused_when_strict(caplog: pytest.LogCaptureFixture) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    model = global_lp_pool()
    try:
        ort.InferenceSession(model.SerializeToString())
    except Exception as e:  # the fall-through needs onnxruntime to refuse this model
        assert "GlobalLpPool" in str(e)
    else:
        pytest.skip(f"onnxruntime {ort.__version__} now runs GlobalLpPool-22")
    with caplog.at_level(logging.WARNING, logger="deploykit"):
        engine = dk.load(model)
    assert engine.backend == "numpy" and engine.plan is not None and engine.plan.fell_back
    (failed,) = engine.plan.failed
    assert failed.label == "onnxruntime[CPU] on cpu" and "GlobalLpPool" in (failed.reason or "")
    assert any("onnxruntime[CPU] on cpu failed to load, falling back to numpy on cpu" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)
    x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)
    np.testing.assert_allclose(engine.run(x)["y"], np.sqrt((x * x).sum(axis=(2, 3), keepdims=True)),
                               rtol=1e-6)
    with pytest.raises(dk.ModelLoadError, match=r"strict=True refuses to fall back: onnxruntime\[CPU\] "
                                                r"on cpu failed to load: .*GlobalLpPool"):
        dk.load(model, strict=True)


def test_strict_refuses_provider_fallback() -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    with pytest.raises(ValueError, match=r"strict=True refuses every fallback; .* allow_fallback=True"):
        dk.load(models.fixed_image(), strict=True, allow_fallback=True)
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    with pytest.raises(dk.BackendUnavailable, match=r"strict=True refuses to fall back: onnxruntime\[CUDA, "
                                                     r"CPU\] on cuda:0 failed to load: .*no CUDAExecution"):
        dk.load(models.fixed_image(), strict=True, providers=[CUDA, CPU])
    engine = dk.load(models.fixed_image(), backend="onnxruntime", strict=True)
    assert engine.fallback is None and engine.plan is not None and engine.plan.strict


def test_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BACKEND, "numpy")
    engine = dk.load(models.fixed_image())
    assert engine.backend == "numpy" and engine.plan is not None
    assert engine.plan.decided_by == ENV_BACKEND and engine.plan.requested == "numpy"
    if dk.available_backends()["onnxruntime"]:
        assert dk.load(models.fixed_image(), backend="onnxruntime").backend == "onnxruntime"  # argument wins
    monkeypatch.setenv(ENV_BACKEND, "auto")
    plan = dk.load(models.fixed_image()).plan
    assert plan is not None and plan.decided_by == "rule"
    monkeypatch.setenv(ENV_BACKEND, "tvm")
    with pytest.raises(dk.UnknownBackend, match=r"DEPLOYKIT_BACKEND='tvm': unknown backend 'tvm'"):
        dk.load(models.fixed_image())


def test_options_no_backend_takes() -> None:
    with pytest.raises(TypeError, match=r"no backend that loads onnx models takes option\(s\) warp_speed"):
        dk.load(models.fixed_image(), warp_speed=9)
