"""Every argument of dk.bench, refused with a DeployKitError naming it — never a raw TypeError —
and before anything is timed. One table: argument, bad value, error class, what the message says."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH

pytest.importorskip("onnxruntime", reason="dk.bench is checked on onnxruntime")

IMAGES = np.zeros((1, 1, 8, 8), np.float32)

BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"model": 3}, dk.InvalidArgument, r"model must be a path, bytes, an onnx.ModelProto or a loaded "
                                       r"deploykit.Engine, got int"),
    ({"model": None}, dk.InvalidArgument, r"model must be a path.*got NoneType"),
    ({"model": "no/such/model.onnx"}, dk.ModelNotFound, r"model file not found: no/such/model.onnx"),
    ({"backends": 3}, dk.InvalidArgument, r"backends must be a backend name, a comma list or list of "
                                          r"names, 'all' or None, got 3"),
    ({"backends": ["onnxruntime", 3]}, dk.InvalidArgument, r"backends must be .*got \['onnxruntime', 3\]"),
    ({"backends": []}, dk.InvalidArgument, r"backends is empty"),
    ({"backends": "warp"}, dk.UnknownBackend, r"unknown backend 'warp'"),
    ({"batch_sizes": 0}, dk.InvalidArgument, r"batch_sizes must be an int >= 1 or a non-empty list of "
                                             r"them, got 0"),
    ({"batch_sizes": "8"}, dk.InvalidArgument, r"batch_sizes must be .*got '8'"),
    ({"batch_sizes": 1.5}, dk.InvalidArgument, r"batch_sizes must be .*got 1.5"),
    ({"batch_sizes": [True]}, dk.InvalidArgument, r"batch_sizes must be .*got \[True\]"),
    ({"concurrency": None}, dk.InvalidArgument, r"concurrency must be .*got None"),
    ({"concurrency": 2.0}, dk.InvalidArgument, r"concurrency must be .*got 2.0"),
    ({"concurrency": [1, -2]}, dk.InvalidArgument, r"concurrency must be .*got \[1, -2\]"),
    ({"concurrency": [1, 100_000]}, dk.InvalidArgument, r"concurrency=100000: each level starts that many "
                                                        r"threads; give at most 256"),
    ({"duration": -1}, dk.InvalidArgument, r"duration must be a number > 0, got -1"),
    ({"duration": float("inf")}, dk.InvalidArgument, r"duration must be a number > 0, got inf"),
    ({"duration": "1"}, dk.InvalidArgument, r"duration must be a number > 0, got '1'"),
    ({"duration": True}, dk.InvalidArgument, r"duration must be a number > 0, got True"),
    ({"duration": 1e308}, dk.InvalidArgument, r"duration=1e\+308 s per row is more than a day \(86400 s\)"),
    ({"dims": {"N": 4}}, dk.InvalidArgument, r"dims\['N'\]: 'N' is the batch \(first\) dimension of input "
                                             r"'images', set by the batch size \(batch_sizes=\); "
                                             r"do not give it in dims"),
    ({"batch_sizes": [1, 10**11]}, dk.InvalidArgument, r"made-up inputs of 23841\.9 GiB"),
    ({"iterations": 1.5}, dk.InvalidArgument, r"iterations must be an int >= 1 \(or None\), got 1.5"),
    ({"iterations": "5"}, dk.InvalidArgument, r"iterations must be an int >= 1.*got '5'"),
    ({"warmup": None}, dk.InvalidArgument, r"warmup must be an int >= 0, got None"),
    ({"warmup": 1.5}, dk.InvalidArgument, r"warmup must be an int >= 0, got 1.5"),
    ({"min_samples": 0}, dk.InvalidArgument, r"min_samples must be an int >= 1, got 0"),
    ({"min_samples": None}, dk.InvalidArgument, r"min_samples must be an int >= 1, got None"),
    ({"inputs": [IMAGES]}, dk.InvalidArgument, r"inputs must be a dict name -> array, a bare numpy array "
                                               r"\(one-input model\) or None, got list"),
    ({"inputs": {1: IMAGES}}, dk.InvalidArgument,
     r"inputs must map input names \(str\) to arrays, got key 1"),
    ({"inputs": {"images": IMAGES}, "dims": {"N": 2}}, dk.InvalidArgument,
     r"shapes, dims and value_ranges shape made-up inputs; with inputs= given, leave them out"),
    ({"shapes": [(1, 1, 8, 8)]}, dk.InvalidArgument, r"shapes must be a dict input name -> shape"),
    ({"shapes": {"images": "1x1x8x8"}}, dk.InvalidArgument,
     r"shapes\['images'\] must be a sequence of ints >= 1, e.g. \(1, 3, 224, 224\), got '1x1x8x8'"),
    ({"shapes": {"images": (1, 0, 8, 8)}}, dk.InvalidArgument, r"shapes\['images'\] must be"),
    ({"shapes": {"nope": (1, 2)}}, dk.InvalidArgument,
     r"shapes names 'nope', which the model has no input of; its inputs: images"),
    ({"dims": ["N"]}, dk.InvalidArgument, r"dims must be a dict dimension symbol -> size"),
    ({"dims": {"N": 0}}, dk.InvalidArgument, r"dims\['N'\] must be an int >= 1, got 0"),
    ({"dims": {"N": "4"}}, dk.InvalidArgument, r"dims\['N'\] must be an int >= 1, got '4'"),
    ({"dims": {"seq": 4}}, dk.InvalidArgument,
     r"dims names 'seq', which no input shape of the model has; its named dimensions: 'N' \(images\)"),
    ({"value_ranges": 5}, dk.InvalidArgument, r"value_ranges must be a dict input name -> \(low, high\)"),
    ({"value_ranges": {"images": "0:1"}}, dk.InvalidArgument,
     r"value_ranges\['images'\] must be \(low, high\) or one number, got '0:1'"),
    ({"value_ranges": {"images": (0, 1, 2)}}, dk.InvalidArgument, r"value_ranges\['images'\] must be"),
    ({"value_ranges": {"nope": (0, 1)}}, dk.InvalidArgument,
     r"value_ranges names 'nope', which the model has no input of; its inputs: images"),
    ({"value_ranges": {"images": (1, 0)}}, dk.InvalidArgument, r"value_ranges\['images'\]: range \(1, 0\) "
                                                              r"is empty"),
    ({"backends": "tflite"}, dk.ModelLoadError, r"digits.onnx: backend 'tflite' loads tflite models, "
                                                r"not onnx$"),
    ({"threads": 0}, dk.InvalidArgument, r"threads must be an int >= 1"),
    ({"threads": "2"}, dk.InvalidArgument, r"threads must be an int >= 1.*got '2'"),
    ({"threads": 10**6}, dk.InvalidArgument, r"threads=1000000 is more than"),
    ({"options": "fast"}, dk.InvalidArgument, r"options must be a dict backend name -> dict of load options"),
    ({"options": {"ort": "providers"}}, dk.InvalidArgument,
     r"options\['ort'\] must be a dict of load options, got 'providers'"),
    ({"options": {"ort": {"nope": 1}}}, dk.UnknownOption,
     r"options\['ort'\]: backend 'onnxruntime' takes no option\(s\) nope; its options: providers"),
    ({"options": {"numpy": {}}}, dk.InvalidArgument, r"options given for 'numpy', which is not benched"),
    ({"options": {"warp": {}}}, dk.UnknownBackend, r"unknown backend 'warp'"),
    ({"seed": -1}, dk.InvalidArgument, r"seed must be an int >= 0, got -1"),
    ({"seed": 1.5}, dk.InvalidArgument, r"seed must be an int >= 0, got 1.5"),
    ({"progress": "yes"}, dk.InvalidArgument, r"progress must be None, True, False or a callable"),
    ({"progress": 1}, dk.InvalidArgument, r"progress must be None, True, False or a callable"),
]


@pytest.mark.parametrize("kwargs, error, pattern", BAD, ids=[
    f"{next(iter(k))}={k[next(iter(k))]!r}"[:40] for k, _, _ in BAD])
def test_bad_argument(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    calls: list[object] = []
    kwargs = {"model": MODEL_PATH, "backends": "onnxruntime", "iterations": 3,
              "progress": lambda *a: calls.append(a), **kwargs}
    if "duration" in kwargs:
        del kwargs["iterations"]
    assert issubclass(error, dk.DeployKitError)
    with pytest.raises(error, match=pattern):
        dk.bench(**kwargs)
    assert calls == []  # refused before any row started


def test_numpy_integers_are_ints() -> None:
    result = dk.bench(MODEL_PATH, "onnxruntime", batch_sizes=np.array([1, 2]), concurrency=np.int64(1),
                      iterations=np.int32(3), warmup=np.int64(0), seed=np.uint8(1))
    assert [(r.batch, r.n) for r in result.rows] == [(1, 3), (2, 3)]


def test_result_methods_check_their_arguments() -> None:
    from deploykit.benchmark.memory import PeakRSS

    result = dk.bench(MODEL_PATH, "onnxruntime", iterations=3)
    for call, pattern in [(lambda: result.to_json(3), r"to_json\(path\) must be a file path .*got 3"),
                          (lambda: result.to_csv(None), r"to_csv\(path\) must be a file path .*got None"),
                          (lambda: result.to_csv(""), r"to_csv\(path\) must be a file path .*got ''"),
                          (lambda: PeakRSS(interval=0), r"interval \(seconds\) must be a number > 0")]:
        with pytest.raises(dk.InvalidArgument, match=pattern):
            call()
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (the 'bench' extra)")
    with pytest.raises(dk.InvalidArgument, match=r"dpi must be a number > 0, got 'high'"):
        result.plot().to_png(dpi="high")  # type: ignore[arg-type]


def test_results_into_a_missing_folder_are_refused_naming_the_path(tmp_path: Path) -> None:
    """Not a raw FileNotFoundError, and nothing created: a mistyped folder is reported, not made."""
    result = dk.bench(MODEL_PATH, "onnxruntime", iterations=3)
    missing = tmp_path / "no" / "such"
    writes = [("to_json(path)", "r.json", result.to_json), ("to_csv(path)", "r.csv", result.to_csv)]
    if importlib.util.find_spec("matplotlib") is not None:
        writes.append(("savefig(fname)", "p.png", result.plot().savefig))
    for what, name, write in writes:
        with pytest.raises(dk.InvalidArgument, match=re.escape(f"{what} {missing / name}: folder "
                                                               f"{str(missing)!r} does not exist")):
            write(missing / name)
        with pytest.raises(dk.InvalidArgument, match=re.escape(f"{what} {tmp_path}: is a folder")):
            write(tmp_path)
    assert not (tmp_path / "no").exists()
    result.to_json(tmp_path / "r.json")
    assert (tmp_path / "r.json").is_file()


def test_an_unknown_option_is_refused_as_dk_load_refuses_it() -> None:
    """Same class and words as dk.load (an UnknownOption, also a TypeError), with the entry named."""
    with pytest.raises(dk.UnknownOption) as loading:
        dk.load(MODEL_PATH, backend="onnxruntime", nope=1)
    with pytest.raises(TypeError) as benching:
        dk.bench(MODEL_PATH, "onnxruntime", options={"ort": {"nope": 1}}, iterations=3)
    assert isinstance(benching.value, dk.UnknownOption)
    assert str(benching.value) == f"options['ort']: {loading.value}"
