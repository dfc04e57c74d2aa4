"""``dk.to_tflite``: an ONNX model to a .tflite file with onnx2tf (in its own environment,
onnx2tf_env.py), then checked against the ONNX model on the user's samples before anyone ships it.

Before conversion the model is mended where TensorFlow refuses what ONNX allows: node names outside
TensorFlow's ``[A-Za-z0-9.][A-Za-z0-9_./>-]*`` are renamed, and every input's shape is fixed (a
symbolic or ``-1`` batch to ``batch_size``, other symbolic dimensions from ``input_shapes``).
onnx2tf turns channels-first inputs (NCHW) into channels-last (NHWC), the layout TFLite kernels are
written for; ``layout="onnx"`` keeps the ONNX layout of the inputs (4-D outputs stay channels last
either way; the report says which). The check maps the layouts itself, so the samples are given as the ONNX
model takes them. The subprocess runs with its proxies pointed at a closed local port, so nothing is
fetched at conversion time (onnx2tf downloads sample images when it lacks calibration data).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..agreement import diff_output, tolerance_table
from ..arguments import check_number
from ..errors import DeployKitError, InvalidArgument
from ..loading import load
from ..reprs import html_table, text_rows
from ..spec import TensorSpec
from . import accuracy as acc
from .gates import model_path, output_path, samples_for
from .onnx2tf_env import onnx2tf_env

#: precision -> (onnx2tf flag, file suffix onnx2tf writes, default accuracy gate: worst cosine /
#: fraction equal). float32 is judged by dk.compare's float32 tolerance instead.
PRECISIONS: dict[str, tuple[str | None, str, float]] = {
    "float32": (None, "_float32.tflite", 1.0),
    "float16": (None, "_float16.tflite", 0.999),
    "dynamic-int8": ("-odrqt", "_dynamic_range_quant.tflite", 0.99),
    "int8": ("-oiqt", "_integer_quant.tflite", 0.98),
}
LAYOUTS = ("nhwc", "onnx")
TIMEOUT_S = 1800
_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_./>-]*$")
_NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
               "no_proxy": "", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


class ConversionFailed(DeployKitError, RuntimeError):
    """onnx2tf could not convert the model (the message carries the end of its output)."""


class TFLiteMismatch(DeployKitError, ValueError):
    """The .tflite does not give what the ONNX model gives on the samples (``report`` says how)."""

    def __init__(self, message: str, report: TFLiteReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class TFLiteReport:
    """What ``dk.to_tflite`` wrote and how its check against the ONNX model went."""

    path: Path
    source: Path
    precision: str
    layout: str
    inputs: list[str]
    outputs: list[str]
    samples: int
    figures: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    size_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"], data["source"] = str(self.path), str(self.source)
        return data

    def _rows(self) -> list[tuple[str, str]]:
        return [("from", str(self.source)), ("written", str(self.path)),
                ("precision", self.precision), ("layout", self.layout), ("size", f"{self.size_bytes:,} B"),
                ("inputs", ", ".join(self.inputs)), ("outputs", ", ".join(self.outputs)),
                ("conversion", f"{self.seconds:.1f} s"), ("checked on", f"{self.samples} sample(s)"),
                *((k, f"{v:.6g}") for k, v in self.figures.items()),
                ("check", "passed" if self.ok else "FAILED"), *(("note", n) for n in self.notes)]

    def __str__(self) -> str:
        return text_rows("deploykit to_tflite", self._rows())

    def _repr_html_(self) -> str:
        return html_table("deploykit to_tflite", self._rows(), ("", ""))


def to_tflite(model: str | Path, path: str | Path, *, samples: Any = None, precision: str = "float32",
              layout: str = "nhwc", batch_size: int = 1,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              accuracy: float | None = None, accept_mismatch: bool = False, env: str | Path | None = None,
              install: bool = True) -> TFLiteReport:
    """Convert the ONNX ``model`` to a .tflite at ``path`` with onnx2tf and check it on ``samples``
    (as the ONNX model takes them: an array for one input, a dict name -> array, or a list of feed
    dicts; None: made-up inputs, with a warning; ``int8`` calibrates on them too, so it needs them).
    ``precision``: float32 | float16 | dynamic-int8 | int8 (int8 weights and activations, float in and
    out). ``layout``: ``nhwc`` (onnx2tf's channels-last inputs) or ``onnx`` (as the ONNX model).
    ``batch_size`` fixes a symbolic batch; ``input_shapes`` fixes other symbolic dimensions.
    float32 must agree within dk.compare's float32 tolerance; the others reach ``accuracy`` (worst
    cosine / fraction equal; defaults 0.999 float16, 0.99 dynamic-int8, 0.98 int8) — else
    ``TFLiteMismatch`` unless ``accept_mismatch``. ``env``: a Python environment with onnx2tf; default:
    deploykit's own, made on first use when ``install`` (~2.6 GB from the package registry)."""
    source = model_path(model)
    target = _target(path, source)
    if precision not in PRECISIONS:
        raise InvalidArgument(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if layout not in LAYOUTS:
        raise InvalidArgument(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    check_number(batch_size, "batch_size", minimum=1, integer=True)
    gate = PRECISIONS[precision][2] if accuracy is None else check_number(accuracy, "accuracy", minimum=0)
    if gate > 1:
        raise InvalidArgument(f"accuracy is a worst cosine / fraction equal, 0..1; got {accuracy!r}")
    if precision == "int8" and samples is None:
        raise InvalidArgument("samples: int8 calibrates its activation ranges on real samples; give some "
                              "(an array, a dict name -> array, or a list of feed dicts)")
    if env is not None or not install:
        onnx2tf_env(env, install=False)  # a folder given, or none to be made, is checked before any work
    reference = load(str(source), "onnxruntime")
    try:
        shapes = _input_shapes(reference.inputs, input_shapes, batch_size)
        feeds = _batched(samples_for(reference, samples, "samples", "to_tflite"), batch_size)
        python = onnx2tf_env(env, install=install) / "bin" / "python"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="deploykit-onnx2tf-") as work:
            folder = Path(work)
            notes = _mend(source, folder / "model.onnx", shapes)
            _local_test_images(folder, feeds[0], reference.inputs[0].name)
            args = _arguments(folder, reference.inputs, shapes, precision, layout, feeds)
            _run(python, args, folder)
            written = folder / "out" / ("model" + PRECISIONS[precision][1])
            if not written.is_file():
                raise ConversionFailed(f"onnx2tf finished without writing {written.name}")
            candidate = target.with_name(f".{target.name}.checking")
            candidate.write_bytes(written.read_bytes())
        seconds = time.perf_counter() - start
        try:
            report = _check(reference, candidate, feeds, precision, layout, gate)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
    finally:
        reference.close()
    report.source, report.seconds, report.notes = source, seconds, notes + report.notes
    report.size_bytes = candidate.stat().st_size
    report.path = target
    if report.ok or accept_mismatch:  # a failing file is not left where the caller asked for a good one
        os.replace(candidate, target)
    else:
        candidate.unlink()
    if not report.ok and not accept_mismatch:
        raise TFLiteMismatch(f"the .tflite at {target} does not match the ONNX model on the samples: "
                             + ", ".join(f"{k} {v:.6g}" for k, v in report.figures.items())
                             + " (pass accept_mismatch=True to keep it anyway)", report)
    return report


def _batched(feeds: list[dict[str, np.ndarray]], size: int) -> list[dict[str, np.ndarray]]:
    """The feeds split into single samples, then joined into feeds of ``size`` (the .tflite's fixed
    batch); a remainder is dropped."""
    feeds = [{name: value[k:k + 1] for name, value in feed.items()}
             for feed in feeds for k in range(min(len(v) for v in feed.values()))]
    if size == 1:
        return feeds
    if len(feeds) < size:
        raise InvalidArgument(f"samples: {len(feeds)} sample(s) (made-up ones when none are given) for "
                              f"batch_size {size}; give at least {size}")
    return [{name: np.concatenate([f[name] for f in feeds[k:k + size]]) for name in feeds[0]}
            for k in range(0, len(feeds) - size + 1, size)]


def _target(path: Any, source: Path) -> Path:
    if isinstance(path, (str, Path)) and Path(path).suffix != ".tflite":
        raise InvalidArgument(f"path {path}: give a file name ending in .tflite")
    return output_path(path, source, "path")


def _input_shapes(inputs: Sequence[TensorSpec], given: Mapping[str, Sequence[int]] | None,
                  batch_size: int) -> dict[str, tuple[int, ...]]:
    """Every input's fixed shape for the conversion: ``given``, else the declared one with a symbolic
    first axis set to ``batch_size``; an input left with another symbolic axis is refused by name."""
    given = dict(given or {})
    names = {s.name for s in inputs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise InvalidArgument(f"input_shapes: no input {', '.join(map(repr, unknown))}; the inputs: "
                              f"{', '.join(sorted(names))}")
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        if spec.name in given:
            value = given[spec.name]
            shape = tuple(value) if isinstance(value, (list, tuple)) else ()
            if not shape or (spec.shape is not None and len(shape) != len(spec.shape)) or \
                    not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                            for d in shape):
                raise InvalidArgument(f"input_shapes[{spec.name!r}]: {len(spec.shape or ())} positive sizes "
                                      f"for {spec}; got {given[spec.name]!r}")
            shapes[spec.name] = tuple(int(d) for d in shape)
            continue
        if spec.shape is None:
            raise InvalidArgument(f"input {spec.name} declares no shape: give "
                                  f"input_shapes={{{spec.name!r}: ...}}")
        dims = [d if isinstance(d, int) and d > 0 else batch_size if k == 0 else None
                for k, d in enumerate(spec.shape)]
        if None in dims:
            raise InvalidArgument(f"input {spec} has symbolic dimensions past the batch: TFLite needs them "
                                  f"fixed; give input_shapes={{{spec.name!r}: (...)}}")
        shapes[spec.name] = tuple(int(d) for d in dims if d is not None)
    return shapes


def _mend(source: Path, target: Path, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """A copy of the model with the node names TensorFlow refuses renamed (unique, same graph) and
    every input's shape fixed (onnx2tf's own ``--overwrite_input_shape`` leaves the .tflite dynamic,
    and XNNPack then fails to resize some of them, rapidocr det among them)."""
    proto = onnx.load(str(source))
    notes: list[str] = []
    taken = {n.name for n in proto.graph.node}
    renamed = 0
    for k, node in enumerate(proto.graph.node):
        if node.name and not _TF_NAME.match(node.name):
            name = re.sub(r"[^A-Za-z0-9_./>-]", "_", node.name).lstrip("_/>-") or f"node_{k}"
            while name in taken:
                name += "_"
            taken.add(name)
            node.name = name
            renamed += 1
    if renamed:
        notes.append(f"{renamed} node name(s) renamed for TensorFlow (characters it refuses)")
    for value in proto.graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    if any(v.type.tensor_type.shape.dim for v in proto.graph.value_info):
        del proto.graph.value_info[:]  # shapes inferred for the symbolic inputs; onnx2tf infers anew
    onnx.save(proto, str(target))
    return notes


#: the file onnx2tf reads from its working folder, else downloads from GitHub (it validates models
#: whose inputs are all 3-channel images on it)
TEST_IMAGES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _local_test_images(folder: Path, feed: Mapping[str, np.ndarray], name: str) -> None:
    """The user's first sample, channels last and repeated to onnx2tf's 20, where onnx2tf looks for
    its test images — so it never fetches them (it resizes them to the input itself)."""
    image = np.asarray(feed[name], dtype=np.float32)
    if image.ndim != 4:
        return
    if image.shape[1] == 3 and image.shape[-1] != 3:
        image = image.transpose(0, 2, 3, 1)
    if image.shape[-1] == 3:
        np.save(folder / TEST_IMAGES, np.repeat(image[:1], 20, axis=0))


def _channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _arguments(folder: Path, inputs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]],
               precision: str, layout: str, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    args = ["-i", str(folder / "model.onnx"), "-o", str(folder / "out"), "-n", "-coion", "-v", "error"]
    if layout == "onnx":
        args += ["-kat", *shapes]
    flag = PRECISIONS[precision][0]
    if flag:
        args.append(flag)
    if precision == "int8":
        for spec in inputs:
            data = np.concatenate([f[spec.name] for f in feeds]).astype(np.float32)
            if layout == "nhwc" and 3 <= data.ndim <= 5:
                data = data.transpose(_channels_last(data.ndim))
            np.save(folder / f"calibration_{len(args)}.npy", data)
            nest = "[" * data.ndim, "]" * data.ndim
            args += ["-cind", spec.name, str(folder / f"calibration_{len(args)}.npy"),
                     f"{nest[0]}0.0{nest[1]}", f"{nest[0]}1.0{nest[1]}"]
    return args


def _run(python: Path, args: list[str], folder: Path) -> None:
    env = {**os.environ, **_NO_NETWORK}
    command = [str(python), "-m", "onnx2tf", *args]
    try:
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as e:
        raise ConversionFailed(f"onnx2tf ran past {TIMEOUT_S} s and was stopped") from e
    if done.returncode:
        raise ConversionFailed("onnx2tf could not convert the model:\n" + _failure(done.stdout + done.stderr))


def _failure(output: str) -> str:
    """What onnx2tf said of a failure: the exception's last line and its ERROR lines (the op's name,
    its advice) — not TensorFlow's start-up chatter or the whole trace."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in output.splitlines()]
    errors = [ln for ln in lines if ln.startswith("ERROR:") and "trace log" not in ln
              and "input_onnx_file_path" not in ln]
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", ln)]
    picked = raised[-1:] + errors[:6] if raised or errors else [ln for ln in lines if ln][-8:]
    return "\n".join(dict.fromkeys(picked))


def _check(reference: Any, target: Path, feeds: list[dict[str, np.ndarray]], precision: str, layout: str,
           gate: float) -> TFLiteReport:
    """Both models on every sample, layouts mapped; float32 judged by dk.compare's tolerance table,
    the rest by worst cosine / fraction equal against ``gate``."""
    lite = load(str(target), "tflite")
    try:
        pairs = _pair(reference.outputs, lite.outputs)
        want, got = [], []
        moved: set[str] = set()
        for feed in feeds:
            want.append(reference.run(feed))
            out = lite.run({spec.name: _to_layout(feed[ref.name], spec, ref.name)
                            for ref, spec in zip(reference.inputs, lite.inputs)})
            got.append({ref.name: _from_layout(out[spec.name], want[-1][ref.name])
                        for ref, spec in pairs})
            moved |= {ref.name for ref, spec in pairs if got[-1][ref.name] is not out[spec.name]}
        inputs, outputs = [str(s) for s in lite.inputs], [str(s) for s in lite.outputs]
    finally:
        lite.close()
    figures = acc.figures(want, got)
    stacked_want, stacked_got = acc.stacked(want), acc.stacked(got)
    notes = [f"output {name}: channels last in the .tflite, moved back for the check"
             for name in sorted(moved)]
    if precision == "float32":
        table = tolerance_table()
        diffs = [diff_output("tflite", ref, stacked_want[ref.name], spec, stacked_got[ref.name], table)
                 for ref, spec in pairs]
        for d in diffs:
            figures[f"{d.output} max abs error"] = d.max_abs
        notes += [f"{d.output}: {d.mismatched} of {d.size} values outside {d.kind} tolerance {d.note}".strip()
                  for d in diffs if not d.ok]
        ok = all(d.ok for d in diffs)
    else:
        for ref, _ in pairs:
            if ref.dtype.kind == "f":
                error = np.abs(stacked_got[ref.name].astype(np.float64) - stacked_want[ref.name])
                figures[f"{ref.name} max abs error"] = float(error.max(initial=0.0))
        reason = acc.check({k: v for k, v in figures.items() if "error" not in k}, gate)
        notes += [f"below the accuracy gate: {reason}"] if reason else []
        ok = reason is None
    return TFLiteReport(target, Path(), precision, layout, inputs, outputs, len(feeds), figures, ok,
                        notes=notes)


def _pair(wanted: Sequence[TensorSpec], offered: Sequence[TensorSpec]) -> list[tuple[TensorSpec, TensorSpec]]:
    """Each ONNX output with its .tflite output: by name, else the first unpaired one of the same dtype
    and rank (quantized files lose names and may reorder outputs), else by position."""
    left = [s for s in offered if s.name not in {w.name for w in wanted}]
    by_name = {s.name: s for s in offered}
    pairs = []
    for want in wanted:
        if want.name in by_name:
            pairs.append((want, by_name[want.name]))
            continue
        same = [s for s in left if s.dtype == want.dtype and s.rank == want.rank] or left
        if not same:
            raise InvalidArgument(f"the .tflite has no output left for {want} (outputs: "
                                  f"{', '.join(map(str, offered))})")
        pairs.append((want, same[0]))
        left.remove(same[0])
    return pairs


def _to_layout(value: np.ndarray, spec: TensorSpec, name: str) -> np.ndarray:
    """An ONNX-layout sample in the .tflite input's layout (as is, or channels moved last)."""
    if spec.shape is None or _fits(value.shape, spec.shape):
        return value
    if 3 <= value.ndim <= 5 and _fits(value.transpose(_channels_last(value.ndim)).shape, spec.shape):
        return np.ascontiguousarray(value.transpose(_channels_last(value.ndim)))
    raise InvalidArgument(f"input {name}: the .tflite takes {spec}, the sample is {value.shape}; "
                          "cannot map one onto the other")


def _from_layout(value: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A .tflite output in the ONNX output's layout (as is, or channels moved back first)."""
    if value.shape == reference.shape or not 3 <= value.ndim <= 5:
        return value
    back = np.argsort(_channels_last(value.ndim))
    moved = value.transpose(back)
    return moved if moved.shape == reference.shape else value


def _fits(shape: tuple[int, ...], declared: tuple[Any, ...]) -> bool:
    return len(shape) == len(declared) and all(not isinstance(d, int) or d < 0 or d == s
                                               for s, d in zip(shape, declared))


__all__ = ["LAYOUTS", "PRECISIONS", "ConversionFailed", "TFLiteMismatch", "TFLiteReport", "to_tflite"]
