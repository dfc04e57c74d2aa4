"""Every public preprocessing function against a table of bad argument values: each is refused with
a PreprocessError naming the argument (never a raw TypeError / ValueError / AttributeError), and
the bytes of a tensor preprocessing allocates are bounded before anything is allocated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit import preprocess as pp
from deploykit.preprocess import Pipeline, checks, reference

IMG = np.zeros((8, 8, 3), np.uint8)

# (argument, bad value, what the message must say)
IMAGE = [
    ("image", None, "image: expected uint8 pixels, got object"),
    ("image", "abc", "image: expected uint8 pixels"),
    ("image", [[1, 2], [3]], r"image: expected a uint8 \(H, W\[, C\]\) array, got list"),
    ("image", np.zeros((4, 4, 3), np.float32), "image: expected uint8 pixels, got float32"),
    ("image", np.zeros((4, 4, 2), np.uint8), "image: expected .* C in 1/3/4"),
    ("image", np.zeros(5, np.uint8), r"image: expected .* got shape \(5,\)"),
    ("image", np.zeros((0, 4, 3), np.uint8), "image: empty"),
]
COMMON = [
    ("swap_rb", "yes", "swap_rb must be True or False, got 'yes'"),
    ("swap_rb", 1, "swap_rb must be True or False, got 1"),
    ("scale", "0.5", "scale must be a finite number"),
    ("scale", float("nan"), "scale must be a finite number, got nan"),
    ("scale", True, "scale must be a finite number, got True"),
    ("mean", 0.5, "mean: expected 3 numbers"),
    ("mean", "abc", "mean: expected 3 numbers"),
    ("mean", (1, 2), "mean: expected 3 values, got 2"),
    ("mean", ("a", 0, 0), "mean must be a finite number, got 'a'"),
    ("std", (1, 0, 1), "std: must not contain 0"),
    ("std", [1, None, 1], "std must be a finite number, got None"),
    ("dtype", "float64", "dtype must be one of 'float32', 'float16', 'uint8', got 'float64'"),
    ("dtype", np.float32, "dtype must be one of"),
    ("dtype", ["float32"], "dtype must be one of"),
    ("layout", "CHW", "layout must be one of 'NCHW', 'NHWC', got 'CHW'"),
    ("layout", None, "layout must be one of"),
    ("mode", "area", "mode must be one of 'cv2', 'pil', got 'area'"),
    ("mode", 3, "mode must be one of"),
    ("out", [[0.0]], r"out: expected a float32 array of shape \(1, 3, 8, 8\)"),
    ("out", np.zeros((1, 3, 8, 8), np.float64), r"out: expected a float32 array"),
    ("out", np.zeros((1, 3, 8, 16), np.float32)[..., ::2], "out: must be C-contiguous"),
]


def _size(name: str) -> list[tuple[str, Any, str]]:
    return [
        (name, 0, f"{name}: 0x0 is outside 1..1048576"),
        (name, -3, f"{name}: -3x-3 is outside"),
        (name, (10**7, 5), f"{name}: 10000000x5 is outside"),
        (name, 2.5, rf"{name}: expected an int or \(height, width\) ints, got 2.5"),
        (name, "64", rf"{name}: expected an int or \(height, width\)"),
        (name, (64,), rf"{name}: expected an int or \(height, width\)"),
        (name, (8, 8, 3), rf"{name}: expected an int or \(height, width\)"),
        (name, (1.5, 2), rf"{name}: expected an int or \(height, width\)"),
        (name, True, rf"{name}: expected an int or \(height, width\)"),
        (name, None, rf"{name}: expected an int or \(height, width\)"),
    ]


PAD = [("pad_value", -1, "pad_value must be an int in 0..255, got -1"),
       ("pad_value", 256, "pad_value must be an int in 0..255"),
       ("pad_value", 1.5, "pad_value must be an int in 0..255"),
       ("pad_value", "114", "pad_value must be an int in 0..255"),
       ("pad_value", True, "pad_value must be an int in 0..255")]
RESIZE = [("resize", 0, "resize: expected a positive int"),
          ("resize", 2**21, r"resize: expected a positive int \(at most 1048576\)"),
          ("resize", 2.5, "resize: expected a positive int"),
          ("resize", "256", "resize: expected a positive int"),
          ("resize", True, "resize: expected a positive int"),
          ("resize", None, "resize: expected a positive int")]

# each public function with arguments that work, and its table of bad ones
FUNCTIONS: dict[str, tuple[Callable[..., Any], dict[str, Any], list[tuple[str, Any, str]]]] = {
    "letterbox": (pp.letterbox, {"image": IMG, "size": 8}, IMAGE + COMMON + _size("size") + PAD),
    "resize": (pp.resize, {"image": IMG, "size": 8}, IMAGE + COMMON + _size("size")),
    "resize_crop": (pp.resize_crop, {"image": IMG, "resize": 8, "crop": 8},
                    IMAGE + COMMON + _size("crop") + RESIZE),
}
CASES = [(fn, arg, value, pattern) for fn, (_, _, bad) in FUNCTIONS.items() for arg, value, pattern in bad]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_the_good_arguments_work(fn: str) -> None:
    func, good, _ = FUNCTIONS[fn]
    result = func(**good)
    tensor = result[0] if isinstance(result, tuple) else result
    assert tensor.shape == (1, 3, 8, 8)


@pytest.mark.parametrize("fn, arg, value, pattern", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_a_bad_argument_is_refused_by_name(fn: str, arg: str, value: Any, pattern: str) -> None:
    func, good, _ = FUNCTIONS[fn]
    with pytest.raises(dk.PreprocessError, match=pattern):
        func(**{**good, arg: value})


BATCH = [
    ({"images": None}, "images: expected a sequence of images"),
    ({"images": 5}, "images: expected a sequence of images"),
    ({"images": "abc"}, r"images: expected a sequence of images .* got str"),
    ({"images": []}, "no images"),
    ({"images": np.zeros((4, 4), np.uint8)}, r"images: an array of images must be \(N, H, W\[, C\]\)"),
    ({"images": [IMG, "x"]}, "image: expected uint8 pixels"),
    ({"op": 5}, "op must be one of 'letterbox', 'resize', 'resize_crop' or a function, got int"),
    ({"op": "blur"}, "op must be one of .* got 'blur'"),
    ({"op": None}, "op must be one of"),
    ({"threads": 0}, r"threads must be an int >= 1 \(or None"),
    ({"threads": -1}, "threads must be an int >= 1"),
    ({"threads": 1.5}, "threads must be an int >= 1"),
    ({"threads": "2"}, "threads must be an int >= 1"),
    ({"threads": True}, "threads must be an int >= 1"),
    ({"out": np.zeros((3, 3, 8, 8), np.float32)}, "out: expected a 4-D array with 2 slots"),
    ({"out": "x"}, "out: expected a 4-D array with 2 slots, got str"),
    ({"out": np.zeros((2, 3, 8, 9), np.float32)}, r"out: expected a float32 array of shape \(2, 3, 8, 8\)"),
    ({"sise": 8}, "sise: not a setting of resize .*it takes size, swap_rb"),
    ({"size": None}, r"size: expected an int or \(height, width\)"),
    ({"mode": "area"}, "mode must be one of"),
    ({"mean": (1, 2)}, "mean: expected 3 values"),
]


@pytest.mark.parametrize("change, pattern", BATCH)
def test_batch_refuses_bad_arguments_by_name(change: dict[str, Any], pattern: str) -> None:
    args: dict[str, Any] = {"images": [IMG, IMG], "op": "resize", "size": 8, **change}
    if "sise" in args:
        del args["size"]
    with pytest.raises(dk.PreprocessError, match=pattern):
        pp.batch(**args)


def test_batch_says_which_setting_is_missing_and_takes_an_array_of_images() -> None:
    with pytest.raises(dk.PreprocessError, match="resize_crop needs resize and crop"):
        pp.batch([IMG], "resize_crop")
    stack = np.stack([IMG, IMG + 1, IMG + 2])
    np.testing.assert_array_equal(pp.batch(stack, pp.resize, size=4),
                                  pp.batch(list(stack), "resize", size=4))
    with pytest.raises(dk.PreprocessError, match="no images"):
        pp.batch(np.zeros((0, 4, 4, 3), np.uint8), "resize", size=4)
    with pytest.raises(dk.PreprocessError, match=r"op: a function must return a \(1, \.\.\.\) array"):
        pp.batch([IMG, IMG], lambda img, out=None: "not a tensor")


PIPELINE = [
    ({"op": "rotate"}, "op must be one of 'letterbox', 'resize', 'resize_crop', got 'rotate'"),
    ({"op": 3}, "op must be one of"),
    ({"size": 0}, "size: 0x0 is outside"),
    ({"size": "x"}, r"size: expected an int or \(height, width\)"),
    ({"size": None}, "a letterbox pipeline needs size"),
    ({"resize": 256}, r"resize is not a setting of letterbox \(it takes size, pad_value\)"),
    ({"crop": 224}, "crop is not a setting of letterbox"),
    ({"mode": "area"}, "mode must be one of"),
    ({"swap_rb": "yes"}, "swap_rb must be True or False"),
    ({"scale": "x"}, "scale must be a finite number"),
    ({"mean": (1, 2)}, "mean: expected 3 values"),
    ({"std": (1, 0, 1)}, "std: must not contain 0"),
    ({"dtype": "float64"}, "dtype must be one of"),
    ({"dtype": "uint8", "mean": (0, 0, 0)}, "mean/std need a float dtype"),
    ({"layout": "CHW"}, "layout must be one of"),
    ({"pad_value": 300}, "pad_value must be an int in 0..255, got 300"),
    ({"extra": "notes"}, "extra must be a dict"),
]


@pytest.mark.parametrize("change, pattern", PIPELINE)
def test_pipeline_refuses_bad_settings_by_name(change: dict[str, Any], pattern: str) -> None:
    with pytest.raises(dk.PreprocessError, match=pattern):
        Pipeline(**{"op": "letterbox", "size": (8, 8), **change})


def test_pipeline_constructors_and_files_refuse_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(dk.PreprocessError, match=r"unknown preprocessing setting\(s\): gamma"):
        Pipeline.letterbox(640, gamma=2)
    with pytest.raises(dk.PreprocessError, match="a resize_crop pipeline needs crop"):
        Pipeline(op="resize_crop", resize=256)
    with pytest.raises(dk.PreprocessError, match="resize: expected a positive int"):
        Pipeline.resize_crop("256", 224)
    with pytest.raises(dk.PreprocessError, match="a preprocessing spec is a JSON object, got list"):
        Pipeline.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(dk.PreprocessError, match="unknown preprocessing setting"):
        Pipeline.from_dict({"format": "deploykit.preprocess/1", "op": "resize", "size": 8, 3: 4})
    with pytest.raises(dk.PreprocessError, match="text: expected the spec's JSON text, got int"):
        Pipeline.from_json(5)  # type: ignore[arg-type]
    with pytest.raises(dk.PreprocessError, match="a preprocessing spec is a JSON object, got int"):
        Pipeline.from_json("5")
    with pytest.raises(dk.PreprocessError, match="invalid preprocessing spec"):
        Pipeline.from_json(b"\xff\xfe\x00")
    with pytest.raises(dk.PreprocessError, match=r"path: no preprocessing spec at .*missing") as info:
        Pipeline.load(tmp_path / "missing.json")
    assert isinstance(info.value, FileNotFoundError)  # as before the checks: dk.SpecNotFound
    with pytest.raises(dk.PreprocessError, match="path: expected a file path, got int"):
        Pipeline.load(5)  # type: ignore[arg-type]
    with pytest.raises(dk.PreprocessError, match="path: cannot write the preprocessing spec"):
        Pipeline.letterbox(8).save(tmp_path / "no" / "such" / "dir.json")
    spec = Pipeline(op="letterbox", size=[8, 8], mean=np.array([0.5, 0.5, 0.5]), std=[1, 1, 1])
    assert spec == Pipeline.letterbox(8, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))  # normalised
    assert Pipeline.from_json(spec.to_json()) == spec


def test_letterbox_transform_refuses_bad_boxes() -> None:
    t = pp.letterbox(IMG, 16)[1]
    with pytest.raises(dk.PreprocessError, match=r"boxes: expected \(\.\.\., 4\) numbers .* got str"):
        t.to_original("abc")
    with pytest.raises(dk.PreprocessError, match=r"boxes: .* got shape \(1, 3\)"):
        t.to_original([[1, 2, 3]])
    with pytest.raises(dk.PreprocessError, match="boxes: expected"):
        t.to_original([[1, 2, 3, 4], [1, 2]])
    assert t.to_original([0, 4, 16, 12]).shape == (4,)


@pytest.mark.parametrize("twin", [reference.resize_cv2, reference.resize_pil])
@pytest.mark.parametrize("args, pattern", [
    (([[1]], 4, 4), "image: expected a uint8 .* got list"),
    ((np.zeros((4, 4), np.float32), 4, 4), r"image: expected .* got float32 \(4, 4\)"),
    ((np.zeros((0, 4), np.uint8), 4, 4), "image: expected a uint8 .*not empty"),
    ((IMG, 0, 4), "height: expected a positive int"),
    ((IMG, 4, "4"), "width: expected a positive int"),
])
def test_the_numpy_twins_refuse_bad_arguments_by_name(twin: Callable[..., Any], args: tuple[Any, ...],
                                                      pattern: str) -> None:
    with pytest.raises(dk.PreprocessError, match=pattern):
        twin(*args)


# -- the byte limit ----------------------------------------------------------------------------

@pytest.mark.parametrize("call, pattern", [
    (lambda: pp.letterbox(IMG, 30000), r"size: 30000x30000 gives a \(1, 3, 30000, 30000\) float32 "
     r"tensor of 10,800,000,000 bytes \(10\.1 GiB\), over the 1\.0 GiB"),
    (lambda: pp.resize(IMG, (60000, 60000)), r"size: 60000x60000 gives .* 43,200,000,000 bytes"),
    (lambda: pp.resize(IMG, (20000, 20000), dtype="uint8", layout="NHWC"),
     r"size: 20000x20000 gives a \(1, 20000, 20000, 3\) uint8 tensor of 1,200,000,000 bytes"),
    (lambda: pp.resize_crop(IMG, 40000, 40000), r"crop: 40000x40000 gives"),
    (lambda: Pipeline.letterbox(30000)(IMG), "size: 30000x30000 gives"),
    (lambda: pp.batch([IMG] * 2, "letterbox", size=30000), "size: 30000x30000 gives"),
    (lambda: Pipeline.resize_to(30000).batch([IMG]), "size: 30000x30000 gives"),
])
def test_an_absurd_output_is_refused_before_allocating(call: Callable[[], Any], pattern: str) -> None:
    with pytest.raises(dk.PreprocessError, match=pattern) as e:
        call()
    assert "allocate the tensor yourself and pass it as out=" in str(e.value)


def test_the_byte_limit_is_exact_covers_batches_and_out_goes_beyond(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pp.MAX_OUTPUT_BYTES == checks.MAX_OUTPUT_BYTES == 1 << 30
    monkeypatch.setattr(checks, "MAX_OUTPUT_BYTES", 3 * 8 * 8 * 4 * 2)  # two (3, 8, 8) float32 images
    assert pp.resize(IMG, 8).nbytes == 768 and pp.resize(IMG, (8, 16)).nbytes == 1536
    with pytest.raises(dk.PreprocessError, match=r"size: 8x17 gives .* 1,632 bytes"):
        pp.resize(IMG, (8, 17))
    assert pp.resize(IMG, (8, 17), out=np.empty((1, 3, 8, 17), np.float32)).shape == (1, 3, 8, 17)
    assert pp.batch([IMG] * 2, "resize", size=8).shape == (2, 3, 8, 8)
    with pytest.raises(dk.PreprocessError, match=r"images: a batch of 3 images of \(3, 8, 8\) gives a "
                                                 r"\(3, 3, 8, 8\) float32 tensor of 2,304 bytes"):
        pp.batch([IMG] * 3, "resize", size=8)
    with pytest.raises(dk.PreprocessError, match="images: a batch of 3 images"):
        pp.batch([IMG] * 3, lambda img, out=None: pp.resize(img, 8, out=out))
    assert pp.batch([IMG] * 3, "resize", size=8, out=np.empty((3, 3, 8, 8), np.float32)).shape[0] == 3
