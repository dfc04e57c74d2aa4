"""Selection by measurement (dk.tune, dk.load(tune=True)), its disk cache, and several artifacts of one
model, on real models and runtimes. Timing budgets are short: these tests check the decisions and
their bookkeeping, never speed (that is benchmarks/auto_select.py's job). Nothing about this machine's
hardware is faked; other hardware comes in as injected HardwareReport objects."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.cli import main
from deploykit.selection import ENV_BACKEND, Plan
from deploykit.tuning import ENV_CACHE_DIR, cache_dir
from tests import zoo

pytestmark = pytest.mark.zoo
ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
HAS_NVIDIA_DRIVER = any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl"))
SECONDS = 0.1


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache folder, through the environment variable."""
    folder = tmp_path / "dk-cache"
    monkeypatch.setenv(ENV_CACHE_DIR, str(folder))
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    return folder


def litert() -> None:
    pytest.importorskip("ai_edge_litert", reason="tflite extra (ai-edge-litert) not installed")


def files(folder: Path) -> list[Path]:
    return sorted((folder / "tune").glob("*.json"))


def other_machine(cpu_model: str = "Injected CPU 9000") -> dk.HardwareReport:
    """This machine's runtimes and providers on a CPU of another name: another fingerprint."""
    here = dk.probe()
    return dk.HardwareReport(cpu=here.cpu._replace(model=cpu_model), memory=here.memory,
                             gpu_probe="injected: no GPU", runtimes=here.runtimes,
                             backend_facts={"onnxruntime": here.backend_facts("onnxruntime")})


# -- one artifact ---------------------------------------------------------------------------------
def test_tune_times_every_viable_candidate_and_ranks_them(zoo_path) -> None:
    path = zoo_path("oww_melspectrogram")
    short = (r"no candidate ran the inputs — onnxruntime\[CPU\] on cpu: failed to run: .*Invalid input "
             r"shape: \{224\}; numpy on cpu: failed to run: .*; give the sizes and values it needs")
    with pytest.raises(dk.InputMismatch, match=short):
        dk.tune(path, seconds=SECONDS)  # made-up audio of 224 samples: shorter than the first window
    plan = dk.tune(path, seconds=SECONDS, dims={"samples": 1280})
    assert plan.decided_by == "measurement" and plan.requested == "auto"
    assert {c.label for c in plan.candidates} == {"onnxruntime[CPU] on cpu", "numpy on cpu"}
    times = [c.measured_ms for c in plan.candidates]
    assert all(t is not None and t > 0 for t in times)
    first, *rest = [t for t in times if t is not None]
    assert first <= min(times) * 1.05 + 1e-9  # the fastest, or the rule's pick within the margin
    assert rest == sorted(rest)
    assert plan.notes[0] == "reference: onnxruntime[CPU] on cpu (the rule's first candidate that runs)"
    assert any(n.startswith("inputs: made up from the input specs") for n in plan.notes)
    assert "(" in plan.explain().splitlines()[1] and " ms)" in plan.explain()


@pytest.mark.skipif(HAS_NVIDIA_DRIVER, reason="this machine has an NVIDIA driver")
def test_no_gpu_here_gpu_candidates_are_rejected_with_reasons(zoo_path) -> None:
    plan = dk.tune(zoo_path("oww_alexa"), seconds=SECONDS)
    gpu = {c.label: c.reason for c in plan.rejected if c.device.startswith("cuda")}
    assert set(gpu) >= {"onnxruntime[Tensorrt, CUDA, CPU] on cuda:0", "onnxruntime[CUDA, CPU] on cuda:0"}
    assert all(r in ("deploykit has no adapter for it yet", f"no NVIDIA GPU ({dk.probe().gpu_probe})")
               or (label.startswith("tensorrt") and r.startswith("not installed"))
               for label, r in gpu.items())


def test_a_gpu_candidate_that_cannot_load_here_is_rejected_not_raised(zoo_path) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    from tests.test_selection import H100

    here = dk.probe()
    gpu_host = dk.HardwareReport(cpu=here.cpu, memory=here.memory, gpus=(H100,), gpu_probe="injected",
                                 runtimes=here.runtimes,
                                 backend_facts={"onnxruntime": {"providers": [CUDA, CPU], "error": None}})
    plan = dk.tune(zoo_path("oww_alexa"), hardware=gpu_host, seconds=SECONDS)
    cuda = next(c for c in plan.rejected if c.label == "onnxruntime[CUDA, CPU] on cuda:0")
    assert cuda.reason is not None and cuda.reason.startswith("failed to load: onnxruntime")
    assert "no CUDAExecutionProvider" in cuda.reason
    assert plan.candidates[0].device == "cpu" and plan.decided_by == "measurement"
    assert plan.notes[0] == "reference: onnxruntime[CPU] on cpu (the rule's first candidate that runs)"


def test_load_with_tune_shows_the_measurement_on_the_plan(zoo_path) -> None:
    engine = dk.load(zoo_path("oww_alexa"), tune={"seconds": SECONDS})
    plan = engine.plan
    assert plan is not None and plan.decided_by == "measurement" and plan.chosen is not None
    assert plan.chosen.key == plan.candidates[0].key and plan.chosen.measured_ms is not None
    assert engine.backend == plan.chosen.backend
    assert f"chosen    {plan.chosen.label} (" in plan.explain()
    feeds = zoo.sample_feeds("oww_alexa")
    np.testing.assert_allclose(engine.run(feeds)["13"], dk.load(zoo_path("oww_alexa")).run(feeds)["13"],
                               rtol=1e-4, atol=1e-5)
    assert dk.load(zoo_path("oww_alexa"), tune=True).plan.decided_by == "cache"  # type: ignore[union-attr]


def test_load_tune_settings_and_the_operator_override(zoo_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"tune= takes .*seconds.*; not 'bogus'"):
        dk.load(zoo_path("oww_alexa"), tune={"bogus": 1})
    with pytest.raises(dk.InvalidArgument, match=r"seconds must be a number > 0, got 0"):
        dk.tune(zoo_path("oww_alexa"), seconds=0)
    monkeypatch.setenv(ENV_BACKEND, "numpy")
    engine = dk.load(zoo_path("oww_alexa"), tune=True)
    assert engine.backend == "numpy" and engine.plan is not None and engine.plan.decided_by == ENV_BACKEND


def test_one_candidate_is_measured_by_tune_and_left_alone_by_load(zoo_path) -> None:
    litert()
    path = zoo_path("mp_face_detection_short")
    plan = dk.tune(path, seconds=SECONDS)
    assert [c.label for c in plan.candidates] == ["tflite on cpu"] and plan.candidates[0].measured_ms
    engine = dk.load(path, tune=True)
    assert engine.plan is not None and engine.plan.decided_by == "rule"
    assert "tune: one viable candidate, nothing to choose by measurement" in engine.plan.notes


def test_reference_by_backend_name_and_by_expected_outputs(zoo_path) -> None:
    path = zoo_path("oww_alexa")
    feeds = zoo.sample_feeds("oww_alexa")
    plan = dk.tune(path, inputs=feeds, reference="numpy", seconds=SECONDS, cache=False)
    assert plan.notes[0] == "reference: numpy on cpu (reference=)" and len(plan.candidates) == 2
    expected = dk.load(path, backend="onnxruntime").run(feeds)
    plan = dk.tune(path, inputs=feeds, reference=expected, seconds=SECONDS, cache=False)
    assert plan.notes[0] == "reference: the expected outputs given" and len(plan.candidates) == 2
    wrong = {k: v + 1.0 for k, v in expected.items()}
    with pytest.raises(dk.ModelLoadError, match=r"no candidate agrees with the reference — onnxruntime"
                                                r"\[CPU\] on cpu: output '13' disagrees with the expected "
                                                r"outputs given: max \|error\| 1 > tolerance"):
        dk.tune(path, inputs=feeds, reference=wrong, seconds=SECONDS, cache=False)


def test_progress_callback_sees_every_step(zoo_path) -> None:
    calls: list[tuple[int, int, str]] = []
    dk.tune(zoo_path("oww_alexa"), seconds=SECONDS, cache=False,
            progress=lambda done, total, label: calls.append((done, total, label)))
    assert calls[0][0] == 0 and calls[-1] == (calls[-1][1], calls[-1][1], "done")
    labels = [c[2] for c in calls]
    assert any(x.startswith("loading onnxruntime[CPU]") for x in labels)
    assert any(x.startswith("timing numpy on cpu (round 1/5)") for x in labels)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


# -- the cache ------------------------------------------------------------------------------------
def test_cache_miss_then_hit_refresh_and_off(zoo_path, cache: Path) -> None:
    path = zoo_path("oww_alexa")
    first = dk.tune(path, seconds=SECONDS)
    (stored,) = files(cache)
    assert first.decided_by == "measurement" and f"decision cached in {stored}" in first.notes
    hit = dk.tune(path, seconds=SECONDS)
    assert hit.decided_by == "cache"
    assert [(c.key, c.measured_ms) for c in hit.candidates] == \
        [(c.key, c.measured_ms) for c in first.candidates]
    assert any(n.startswith("measured ") and n.endswith(f"read from the cache {stored}") for n in hit.notes)
    before = json.loads(stored.read_text())
    refreshed = dk.tune(path, seconds=SECONDS, cache="refresh")
    assert refreshed.decided_by == "measurement" and files(cache) == [stored]
    assert json.loads(stored.read_text())["ranked"] != before["ranked"]  # measured again
    assert dk.tune(path, seconds=SECONDS, cache=False).decided_by == "measurement"
    # options that change the result make another entry
    dk.tune(path, seconds=SECONDS, threads=1)
    dk.tune(path, seconds=SECONDS, inputs=zoo.sample_feeds("oww_alexa"))
    assert len(files(cache)) == 3


def test_corrupted_cache_file_is_ignored_and_rewritten(zoo_path, cache: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = zoo_path("oww_alexa")
    dk.tune(path, seconds=SECONDS)
    (stored,) = files(cache)
    good = json.loads(stored.read_text())
    for bad in ("{not json", json.dumps(good | {"ranked": "onnxruntime"}),
                json.dumps(good | {"ranked": [{"backend": "tvm", "device": "cpu", "providers": [],
                                               "artifact": None, "measured_ms": 1.0}]})):
        stored.write_text(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deploykit"):
            plan = dk.tune(path, seconds=SECONDS)
        assert plan.decided_by == "measurement"
        assert any(r.levelno == logging.WARNING and "ignoring the unreadable tune cache file" in
                   r.getMessage() for r in caplog.records)
        assert json.loads(stored.read_text())["key"] == good["key"]  # rewritten, whole
        assert dk.tune(path, seconds=SECONDS).decided_by == "cache"
    assert not [p for p in (cache / "tune").iterdir() if p.suffix == ".tmp"]
    # bytes that are not even text: ignored the same way, never an exception
    stored.write_bytes(b"\xff\xfe garbage")
    with caplog.at_level(logging.WARNING, logger="deploykit"):
        assert dk.tune(path, seconds=SECONDS).decided_by == "measurement"
    assert dk.load(path, tune={"seconds": SECONDS}).plan.decided_by == "cache"


def test_numpy_scalars_in_settings_are_keyed_by_value(zoo_path, cache: Path) -> None:
    path = zoo_path("oww_alexa")
    assert dk.tune(path, seconds=SECONDS, threads=np.int64(1), rtol=np.float32(1e-4)).decided_by \
        == "measurement"
    assert dk.tune(path, seconds=SECONDS, threads=1, rtol=float(np.float32(1e-4))).decided_by == "cache"


def test_new_external_weights_are_a_new_key(tmp_path: Path, cache: Path) -> None:
    import onnx

    from deploykit.demo import MODEL_PATH

    model = onnx.load(MODEL_PATH)
    path = tmp_path / "digits.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="digits.data", size_threshold=0)
    assert dk.tune(path, seconds=SECONDS).decided_by == "measurement"
    assert dk.tune(path, seconds=SECONDS).decided_by == "cache"
    data = tmp_path / "digits.data"
    data.write_bytes(bytes(len(data.read_bytes())))  # retrained: same .onnx bytes, new weights
    assert dk.tune(path, seconds=SECONDS).decided_by == "measurement"


def test_another_hardware_fingerprint_is_another_key(zoo_path, cache: Path) -> None:
    path = zoo_path("oww_alexa")
    here = dk.tune(path, seconds=SECONDS)
    there = other_machine()
    assert there.fingerprint() != dk.probe().fingerprint()
    elsewhere = dk.tune(path, seconds=SECONDS, hardware=there)
    assert elsewhere.decided_by == "measurement" and elsewhere.hardware == there.fingerprint()
    assert len(files(cache)) == 2
    assert dk.tune(path, seconds=SECONDS, hardware=there).decided_by == "cache"
    assert dk.tune(path, seconds=SECONDS).decided_by == "cache" and here.hardware == dk.probe().fingerprint()


def test_a_cached_choice_that_no_longer_loads_is_measured_again(zoo_path, cache: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    from tests.test_selection import H100

    here = dk.probe()
    gpu_host = dk.HardwareReport(cpu=here.cpu, memory=here.memory, gpus=(H100,), gpu_probe="injected",
                                 runtimes=here.runtimes,
                                 backend_facts={"onnxruntime": {"providers": [CUDA, CPU], "error": None}})
    path = zoo_path("oww_alexa")
    dk.tune(path, seconds=SECONDS, hardware=gpu_host)
    (stored,) = files(cache)
    entry = json.loads(stored.read_text())
    (cuda,) = [c for c in entry["rejected"] if c["providers"] == [CUDA, CPU]]
    entry["rejected"].remove(cuda)
    entry["ranked"].insert(0, {k: v for k, v in cuda.items() if k != "reason"} | {"measured_ms": 0.001})
    stored.write_text(json.dumps(entry))  # as if the CUDA candidate had loaded and won back then
    with caplog.at_level(logging.WARNING, logger="deploykit"):
        plan = dk.tune(path, seconds=SECONDS, hardware=gpu_host)
    assert plan.decided_by == "measurement" and plan.candidates[0].device == "cpu"
    assert any("the cached choice onnxruntime[CUDA, CPU] on cuda:0 no longer loads" in r.getMessage()
               for r in caplog.records)


def test_cache_folder_environment_platformdirs_and_by_hand(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(ENV_CACHE_DIR)
    platformdirs = pytest.importorskip("platformdirs", reason="platformdirs (tune extra) not installed")
    assert cache_dir() == Path(platformdirs.user_cache_dir("deploykit", appauthor=False))
    if sys.platform in ("win32", "darwin"):
        return
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # as if it were not installed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "deploykit"


def test_concurrent_tunes_share_one_valid_cache_file(zoo_path, cache: Path) -> None:
    path = zoo_path("oww_alexa")
    plans: list[Plan] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            plans.append(dk.tune(path, seconds=SECONDS, cache="refresh"))
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(3)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors and len(plans) == 3
    (stored,) = files(cache)
    assert json.loads(stored.read_text())["key"]["artifacts"] == [zoo._sha256(path)]
    assert dk.tune(path, seconds=SECONDS).decided_by == "cache"


# -- several artifacts of one model ---------------------------------------------------------------
def test_several_artifacts_by_rule_and_with_the_same_feeds(zoo_path) -> None:
    litert()
    onnx_path, tflite_path = zoo_path("oww_alexa"), zoo_path("oww_alexa_tflite")
    feeds = zoo.sample_feeds("oww_alexa")  # under the ONNX file's input name
    engine = dk.load([onnx_path, tflite_path])
    plan = engine.plan
    assert plan is not None and plan.artifacts == [str(onnx_path), str(tflite_path)]
    assert [c.label for c in plan.candidates] == ["onnxruntime[CPU] on cpu [alexa_v0.1.onnx]",
                                                  "tflite on cpu [alexa_v0.1.tflite]",
                                                  "numpy on cpu [alexa_v0.1.onnx]"]
    assert not [c for c in plan.rejected if "models, not" in (c.reason or "")]  # no format noise
    assert plan.to_dict()["candidates"][1]["artifact"] == str(tflite_path)
    lite = dk.load([onnx_path, tflite_path], backend="tflite")
    assert lite.backend == "tflite" and lite.source.label == str(tflite_path)
    assert [s.name for s in lite.inputs] == ["onnx::Flatten_0"] and [s.name for s in lite.outputs] == ["13"]
    assert lite.info["tensor_names"] == {"onnx::Flatten_0": "onnx_tf__tf_Flatten_0_79e3d279", "13": "13"}
    ours, theirs = engine.run(feeds)["13"], lite.run(feeds)["13"]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(lite.run(feeds, outputs="13")["13"], theirs)
    reverse = dk.load([tflite_path, onnx_path], backend="onnxruntime")  # the .tflite names rule now
    assert [s.name for s in reverse.inputs] == ["onnx_tf__tf_Flatten_0_79e3d279"]
    np.testing.assert_allclose(reverse.run(zoo.sample_feeds("oww_alexa_tflite"))["13"], ours, rtol=1e-6)


def test_several_artifacts_tuned_pick_the_fastest_that_agrees(zoo_path) -> None:
    litert()
    pair = [zoo_path("oww_embedding"), zoo_path("oww_embedding_tflite")]
    feeds = zoo.sample_feeds("oww_embedding")
    plan = dk.tune(pair, inputs=feeds, seconds=0.3)
    assert plan.decided_by == "measurement" and len(plan.candidates) == 3  # ORT, LiteRT, numpy: all agree
    assert {c.artifact for c in plan.candidates} == {str(p) for p in pair}
    engine = dk.load(pair, tune={"inputs": feeds, "seconds": 0.3})
    assert engine.plan is not None and engine.plan.decided_by == "cache"
    assert engine.plan.chosen is not None and engine.plan.chosen.key == plan.candidates[0].key
    reference = dk.load(pair[0], backend="onnxruntime").run(feeds)["conv2d_19"]
    np.testing.assert_allclose(engine.run(feeds)["conv2d_19"], reference, rtol=1e-4,
                               atol=1e-5 * float(np.abs(reference).max()))


def test_a_disagreeing_artifact_is_rejected_with_the_reason(zoo_path) -> None:
    """hey_rhasspy's .onnx and .tflite are two different networks: tuning must not mix them up."""
    litert()
    pair = [zoo_path("oww_hey_rhasspy"), zoo_path("oww_hey_rhasspy_tflite")]
    feeds = zoo.sample_feeds("oww_hey_rhasspy")
    plan = dk.tune(pair, inputs=feeds, seconds=SECONDS)
    (lite,) = [c for c in plan.rejected if c.backend == "tflite"]
    gap = dk.compare([pair[0], pair[1]], feeds).diffs[0]
    assert not gap.ok and gap.max_abs > 0.1
    assert lite.reason == (f"output '39' disagrees with onnxruntime[CPU] on cpu [hey_rhasspy_v0.1.onnx]: max "
                           f"|error| {gap.max_abs:.3g} > tolerance 1e-05 + 0.0001·|ref| (float32; 1 of 1 "
                           "elements out)")
    assert all(c.backend != "tflite" for c in plan.candidates)
    engine = dk.load(pair, tune={"inputs": feeds, "seconds": SECONDS})
    assert engine.backend in ("onnxruntime", "numpy") and engine.plan is not None
    assert lite.reason in [c.reason for c in engine.plan.rejected]


def test_a_name_both_artifacts_have_never_lands_on_another_tensor(tmp_path: Path) -> None:
    """Artifacts sharing some tensor names (in another order) pair those by name, the rest by position."""
    import onnx
    from onnx import TensorProto, helper

    from deploykit.artifacts import open_artifacts
    from deploykit.selection import Candidate

    def model(outputs: list[tuple[str, str]]) -> onnx.ModelProto:
        graph = helper.make_graph(
            [helper.make_node(op, ["x"], [name]) for name, op in outputs], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2]) for name, _ in outputs])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model([("relu", "Relu"), ("neg", "Neg")]), a)
    onnx.save(model([("neg", "Neg"), ("relu_out", "Relu")]), b)  # 'neg' shared, order differs
    arts = open_artifacts([a, b])
    x = np.array([1.0, -2.0], np.float32)
    engine = arts.open(Candidate("numpy", artifact=arts.labels[1]), None, {})  # b under a's names
    out = engine.run({"x": x})
    np.testing.assert_array_equal(out["relu"], [1.0, 0.0])
    np.testing.assert_array_equal(out["neg"], [-1.0, 2.0])
    np.testing.assert_array_equal(engine.run({"x": x}, outputs=["neg"])["neg"], [-1.0, 2.0])
    buf = np.zeros(2, np.float32)  # preallocated outputs go by the presented names too
    assert engine.run({"x": x}, out={"relu": buf})["relu"] is buf
    np.testing.assert_array_equal(buf, [1.0, 0.0])


def test_artifact_specs_are_read_with_the_options_given(tmp_path: Path) -> None:
    """An int8-I/O .tflite with dequantize=True presents float32 tensors, like its float ONNX twin."""
    litert()
    import onnx
    from onnx import TensorProto, helper

    from tests.backends import tflite_models as tm

    outs = ("q_out", "doubled")
    graph = helper.make_graph(
        [helper.make_node("Add", ["q_in", "q_in"], [name]) for name in outs], "twin",
        [helper.make_tensor_value_info("q_in", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 8]) for name in outs])
    twin = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    twin.ir_version = 8
    onnx.save(twin, tmp_path / "double.onnx")
    (tmp_path / "double.tflite").write_bytes(tm.quantized_double())
    pair = [tmp_path / "double.onnx", tmp_path / "double.tflite"]
    with pytest.raises(dk.ModelLoadError, match="dtype float32 vs int8"):
        dk.load(pair)  # raw int8 I/O: not the same tensors as the float twin
    engine = dk.load(pair, dequantize=True)  # only LiteRT takes the option; specs read with it
    assert engine.backend == "tflite" and [s.dtype for s in engine.outputs] == [np.float32] * 2
    assert engine.plan is not None and any("dequantize" in (c.reason or "") for c in engine.plan.rejected)
    grid = (np.arange(-4, 4, dtype=np.float32) * 0.5)[None]
    np.testing.assert_array_equal(engine.run({"q_in": grid})["doubled"], 2 * grid)


def test_incompatible_artifacts_are_refused_at_load(zoo_path) -> None:
    alexa, timer, embedding = zoo_path("oww_alexa"), zoo_path("oww_timer"), zoo_path("oww_embedding")
    with pytest.raises(dk.ModelLoadError, match=r"input 'onnx::Flatten_0' of .*alexa_v0.1.onnx \(onnx::"
                                                r"Flatten_0: float32\[1,16,96\]\) and 'onnx::Flatten_0' of "
                                                r".*timer_v0.1.onnx .*dimension 1 is 16 vs 34; the artifacts "
                                                r"of one model must"):
        dk.load([alexa, timer])
    with pytest.raises(dk.ModelLoadError, match=r"input 'onnx::Flatten_0' .* and 'input_1' of "
                                                r".*embedding_model.onnx .*: rank 3 vs 4"):
        dk.tune([alexa, embedding])


def test_manifest_names_the_artifacts(zoo_path, tmp_path: Path) -> None:
    litert()
    for key in ("oww_alexa", "oww_alexa_tflite"):
        shutil.copy(zoo_path(key), tmp_path)
    manifest = tmp_path / "alexa.json"
    manifest.write_text(json.dumps({"artifacts": ["alexa_v0.1.onnx", "alexa_v0.1.tflite"]}))
    engine = dk.load(manifest, backend="tflite")
    assert engine.plan is not None and engine.plan.artifacts == [str(tmp_path / "alexa_v0.1.onnx"),
                                                                 str(tmp_path / "alexa_v0.1.tflite")]
    assert engine.run(zoo.sample_feeds("oww_alexa"))["13"].shape == (1, 1)
    assert dk.load(str(manifest)).backend == "onnxruntime"
    manifest.write_text(json.dumps({"files": ["alexa_v0.1.onnx"]}))
    with pytest.raises(dk.ModelLoadError, match=r'alexa.json: a manifest is a JSON object \{"artifacts": '):
        dk.load(manifest)
    with pytest.raises(dk.ModelNotFound, match=r"manifest not found: .*nowhere.json"):
        dk.load(tmp_path / "nowhere.json")


def test_named_backend_without_a_fitting_artifact(zoo_path) -> None:
    with pytest.raises(dk.BackendUnavailable, match=r"no backend could run any of its artifacts — tflite "
                                                    r"on cpu \[alexa_v0.1.onnx\]: backend 'tflite' loads "
                                                    r"tflite models, not onnx"):
        dk.load([zoo_path("oww_alexa"), zoo_path("oww_hey_mycroft")], backend="tflite")


# -- the command line -----------------------------------------------------------------------------
def test_cli_tune(zoo_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(zoo_path("oww_alexa")), "--seconds", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decided_by"] == "measurement" and data["candidates"][0]["measured_ms"] > 0
    assert main(["tune", str(zoo_path("oww_alexa")), "--seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "decided by cache" in out.splitlines()[0] and "  viable    numpy on cpu (" in out
    assert main(["tune", str(zoo_path("oww_alexa")), "--seconds", "-1"]) == 2
    assert "seconds must be a number > 0" in capsys.readouterr().err


def test_candidate_and_plan_stay_backward_compatible() -> None:
    from deploykit.selection import Candidate

    c = Candidate("numpy")
    assert c.artifact is None and "artifact" not in c.to_dict() and c.label == "numpy on cpu"
    d = replace(c, artifact="/m/model.tflite")
    assert d.label == "numpy on cpu [model.tflite]" and d.key != c.key and d.to_dict()["artifact"]
