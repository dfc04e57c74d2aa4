"""The TensorRT backend's parts that need no GPU (TensorRT cannot be installed on this project's
machines): optimization profiles from specs and ranges, the run-time shape check, engine cache keys
and files, build options, dtypes, the errors without TensorRT, and the plan's reasons. The engine
build and run themselves are checked by ``benchmarks/gpu_check.py`` on a machine with a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.backends.tensorrt import cache
from deploykit.backends.tensorrt.options import BuildOptions, build_options, numpy_dtype
from deploykit.backends.tensorrt.profiles import DEFAULT_BATCH_MAX, derive, select
from deploykit.spec import TensorSpec
from tests import models

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
IMAGE = TensorSpec("x", ("N", 3, 224, 224), np.dtype(np.float32))
TOKENS = TensorSpec("ids", ("batch", "seq"), np.dtype(np.int64))


def test_a_symbolic_batch_gets_the_default_range_and_fixed_dims_stay() -> None:
    profile = derive([IMAGE])
    assert profile.ranges["x"] == ((1, 3, 224, 224), (1, 3, 224, 224), (DEFAULT_BATCH_MAX, 3, 224, 224))


def test_named_dimensions_take_their_ranges_for_every_input_that_names_them() -> None:
    mask = TensorSpec("mask", ("batch", "seq"), np.dtype(np.int64))
    profile = derive([TOKENS, mask], dims={"batch": (1, 4, 16), "seq": (8, 128, 512)})
    assert profile.ranges["ids"] == profile.ranges["mask"] == ((1, 8), (4, 128), (16, 512))


def test_a_symbolic_dimension_without_a_range_is_refused_by_name() -> None:
    with pytest.raises(dk.InvalidArgument,
                       match=r"dimension 1 \('seq'\) is symbolic and has no range.*dims="):
        derive([TOKENS])


@pytest.mark.parametrize("kwargs, match", [
    ({"shapes": {"y": [(1,), (1,), (1,)]}}, "shapes: no input 'y'"),
    ({"shapes": {"x": [(1, 3, 224, 224), (4, 3, 224, 224)]}}, r"give \[min, opt, max\] shapes"),
    ({"shapes": {"x": [(1, 3, 224), (1, 3, 224), (1, 3, 224)]}}, "has rank 4"),
    ({"shapes": {"x": [(4, 3, 224, 224), (2, 3, 224, 224), (8, 3, 224, 224)]}}, "min <= opt <= max"),
    ({"shapes": {"x": [(1, 1, 224, 224), (1, 1, 224, 224), (1, 1, 224, 224)]}}, "the model fixes it to 3"),
    ({"dims": {"N": (0, 1, 2)}}, r"need 1 <= min <= opt <= max"),
    ({"dims": {"N": "big"}}, r"dims\['N'\]: give \(min, opt, max\)"),
])
def test_bad_ranges_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        derive([IMAGE], **kwargs)


def test_a_shape_outside_every_profile_is_an_input_mismatch_naming_the_ranges() -> None:
    profiles = [derive([IMAGE], dims={"N": (1, 4, 8)}), derive([IMAGE], dims={"N": (9, 16, 32)})]
    assert select(profiles, {"x": (4, 3, 224, 224)}) == 0
    assert select(profiles, {"x": (20, 3, 224, 224)}) == 1
    with pytest.raises(dk.InputMismatch, match=r"x \[64, 3, 224, 224\] fit no optimization profile.*"
                                               r"max \[8, 3, 224, 224\].*max \[32, 3, 224, 224\]"):
        select(profiles, {"x": (64, 3, 224, 224)})
    with pytest.raises(dk.InputMismatch):
        select(profiles, {"x": (4, 3, 112, 112)})


def _key(**change: object) -> str:
    parts: dict = {"model_sha256": "a" * 64, "trt_version": "10.13.0", "gpu_name": "NVIDIA H200",
                   "compute_capability": "9.0", "build": BuildOptions().key(),
                   "profiles": [derive([IMAGE]).to_dict()]}
    parts.update(change)
    return cache.cache_key(**parts)


def test_the_cache_key_changes_with_every_component_and_only_then() -> None:
    assert _key() == _key()
    changed = [_key(model_sha256="b" * 64), _key(trt_version="10.14.0"), _key(gpu_name="NVIDIA L4"),
               _key(compute_capability="8.9"), _key(build=BuildOptions(fp16=True).key()),
               _key(build=BuildOptions(workspace_mb=512).key()), _key(build=BuildOptions(opt_level=5).key()),
               _key(build=BuildOptions(tf32=False).key()),
               _key(profiles=[derive([IMAGE], dims={"N": (1, 2, 4)}).to_dict()])]
    assert len(set(changed) | {_key()}) == len(changed) + 1


def test_the_timing_cache_does_not_change_the_key(tmp_path: Path) -> None:
    assert BuildOptions(timing_cache=str(tmp_path / "t.cache")).key() == BuildOptions().key()


def test_engine_files_round_trip_and_foreign_or_torn_ones_are_rebuilt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, plan = tmp_path / "e.engine", b"\x00serialized engine\xff" * 100
    cache.store(path, "k1", plan, {"model": "m.onnx"})
    assert cache.load(path, "k1") == plan
    assert cache.load(path, "k2") is None and "another build" in caplog.text
    whole = path.read_bytes()
    path.write_bytes(whole[: cache.HEADER_BYTES + 500])  # torn inside the engine: the header is whole
    assert cache.load(path, "k1") is None and "torn or changed" in caplog.text
    path.write_bytes(whole[:-1] + b"\x00")  # one byte of the engine changed
    assert cache.load(path, "k1") is None
    path.write_bytes(whole[:100])  # torn inside the header
    assert cache.load(path, "k1") is None and "cut short" in caplog.text
    path.write_bytes(b"ftrt" + bytes(5000))  # a TensorRT plan written by something else
    assert cache.load(path, "k1") is None
    assert cache.load(tmp_path / "missing.engine", "k1") is None


def test_the_cache_lives_in_deploykit_s_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path))
    assert cache.engine_path("abc") == tmp_path / "tensorrt" / "abc.engine"


@pytest.mark.parametrize("kwargs, match", [
    ({"fp16": "yes"}, "fp16 must be True or False"), ({"workspace_mb": 0}, "workspace_mb must be"),
    ({"opt_level": 9}, "opt_level must be 0 to 5"),
    ({"timing_cache": "/no/such/dir/t.cache"}, "timing_cache"),
])
def test_bad_build_options_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        BuildOptions(**kwargs)


def test_load_options_become_build_options() -> None:
    assert build_options({"fp16": True, "shapes": {}, "contexts": 2}) == BuildOptions(fp16=True)


def test_tensor_types_map_to_numpy_and_the_rest_is_named() -> None:
    assert numpy_dtype("FLOAT", "x") == np.float32 and numpy_dtype("DataType.HALF", "x") == np.float16
    assert numpy_dtype("INT64", "x") == np.int64 and numpy_dtype("BOOL", "x") == np.bool_
    with pytest.raises(dk.InvalidArgument, match="tensor y: TensorRT type BF16 has no numpy equivalent"):
        numpy_dtype("BF16", "y")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_loading_says_how_to_install_it() -> None:
    with pytest.raises(dk.BackendUnavailable,
                       match=r"TensorRT is not installed: pip install 'deploykit\[tensorrt\]'"):
        dk.load(models.fixed_image(), backend="tensorrt")
    assert not dk.available_backends()["tensorrt"]


def test_a_serialized_engine_file_is_recognised_by_its_name(tmp_path: Path) -> None:
    (tmp_path / "model.engine").write_bytes(b"ftrt" + bytes(64))
    from deploykit.model import open_model
    assert open_model(tmp_path / "model.engine").format == "tensorrt"
    if not HAS_TENSORRT:
        with pytest.raises(dk.BackendUnavailable, match=r"model\.engine: no backend could run it — tensorrt "
                                                        r"on cuda:0: not installed"):
            dk.load(tmp_path / "model.engine")


def test_the_plan_prefers_tensorrt_on_a_gpu_host_and_rejects_unprofiled_models() -> None:
    from deploykit.model import open_model
    from deploykit.selection import make_plan
    from tests.test_selection import CPU, CUDA, H100, TRT, report
    host = report(gpus=(H100,), providers=(TRT, CUDA, CPU))
    plan = make_plan(open_model(models.fixed_image()), host)
    assert plan.candidates[0].label == "tensorrt on cuda:0" and plan.backend == "tensorrt"
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.FLOAT, ["batch", "seq"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])])
    text = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(text)
    plan = make_plan(open_model(text), host)
    why = {c.label: c.reason for c in plan.rejected}["tensorrt on cuda:0"]
    assert why is not None and why.startswith("no optimization profile: ") and "'seq'" in why
    ranged = make_plan(open_model(text), host, options={"dims": {"seq": (1, 64, 256)}})
    assert ranged.candidates[0].label == "tensorrt on cuda:0"


def test_the_build_command_turns_flags_into_load_options(capsys: pytest.CaptureFixture) -> None:
    from deploykit.cli import build_parser
    from deploykit.cli.build import options_of
    args = build_parser().parse_args(["build", "m.onnx", "--fp16", "--dim", "seq=1,128,512",
                                      "--shape", "x=1x3x8x8:2x3x8x8:4x3x8x8", "--workspace-mb", "256"])
    assert options_of(args) == {"fp16": True, "int8": False, "tf32": True, "opt_level": 3, "device_id": 0,
                                "rebuild": False, "workspace_mb": 256, "dims": {"seq": (1, 128, 512)},
                                "shapes": {"x": [(1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)]}}
    from deploykit.cli import main
    assert main(["build", "m.onnx", "--shape", "x=1x3:2x3"]) == 2
    assert "expected INPUT=MIN:OPT:MAX" in capsys.readouterr().err


def test_concurrent_stores_of_one_engine_do_not_collide(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    path, plan = tmp_path / "e.engine", bytes(range(256)) * 400
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: cache.store(path, "k", plan, {}), range(32)))
    assert cache.load(path, "k") == plan and [p.name for p in tmp_path.iterdir()] == ["e.engine"]
