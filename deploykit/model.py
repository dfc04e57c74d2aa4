"""Model artifacts: turn what the user passed (path, bytes, ``onnx.ModelProto``) into a checked source.

Everything about the *file* is decided here, before any runtime sees it: the format, whether it
parses, whether it is structurally an ONNX model, whether external-data references stay inside
the model's folder. Runtimes are C++ and trust their input; we do not.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .errors import InvalidArgument, ModelLoadError, ModelNotFound, first_line
from .onnxdata import check_tensors
from .spec import TensorSpec, normalize_dim

if TYPE_CHECKING:
    import onnx

#: What ``dk.load`` accepts as a model.
ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, "onnx.ModelProto"]

log = logging.getLogger("deploykit")

_TFLITE_MAGIC = b"TFL3"  # FlatBuffer file identifier at byte offset 4 of every .tflite file
_PROTO_LIMIT = 2**31 - 1  # protobuf cannot serialize a message larger than 2 GiB


@dataclass
class ModelSource:
    """One model artifact, checked and ready for a backend.

    ``path`` is set when the model came from a file (backends should load from it, so that external
    data next to it is found); ``data`` holds the bytes when it came from memory.
    """

    format: str
    label: str
    path: Path | None = None
    data: bytes | None = None
    _proto: Any = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    @property
    def proto(self) -> onnx.ModelProto:
        """The parsed ONNX model (external tensor data not loaded)."""
        if self.format != "onnx":
            raise ModelLoadError(f"{self.label}: a {self.format} model has no ONNX graph")
        return self._proto

    @property
    def size(self) -> int:
        if self.path is not None:
            return self.path.stat().st_size
        return len(self.data or b"")

    def sha256(self) -> str:
        """Hex sha256 of the artifact's bytes; for an ONNX file with external data, of the main
        file followed by each external-data file it names (new weights give a new digest)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            if self.path is not None:
                _hash_file(h, self.path)
                for location in self._external_files():
                    h.update(b"\0" + location.encode() + b"\0")
                    target = self.path.parent / location
                    if target.is_file():
                        _hash_file(h, target)
            else:
                h.update(self.data or b"")
            self._sha256 = h.hexdigest()
        return self._sha256

    def _external_files(self) -> list[str]:
        if self.format != "onnx" or self._proto is None:
            return []
        from onnx.external_data_helper import _get_all_tensors

        return sorted({e.value for t in _get_all_tensors(self._proto) for e in t.external_data
                       if e.key == "location"})

    def metadata(self) -> dict[str, Any]:
        """What the model file says of itself: for ONNX the producer, its version, the doc string,
        domain, model version, graph name and the custom ``metadata_props`` map (``custom``);
        {} for other formats."""
        if self.format != "onnx" or self._proto is None:
            return {}
        m = self._proto
        return {"producer": m.producer_name, "producer_version": m.producer_version,
                "doc_string": m.doc_string, "domain": m.domain, "model_version": m.model_version,
                "graph": m.graph.name, "ir_version": m.ir_version,
                "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
                "custom": {p.key: p.value for p in m.metadata_props}}

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


#: ``check`` values: True runs the ONNX checker and logs what it finds (runtimes accept models
#: the checker rejects, e.g. outputs declared without a shape); "strict" makes a finding a
#: ModelLoadError; False skips the checker. Parsing and structure are always checked.
CheckMode = bool | str


def open_model(model: ModelLike, *, check: CheckMode = True) -> ModelSource:
    """Identify and check a model artifact; raise ``ModelLoadError`` naming it and the cause.

    The format comes from the content (``sniff_format``), not the file name: an ONNX file named
    ``.tflite`` is an ONNX model; a file that is neither (text, an archive, ...) is refused with
    what it looks like."""
    if check is not True and check is not False and check != "strict":
        raise InvalidArgument(f"check must be True, False or 'strict', got {check!r}")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser()
        label = str(path)
        if not path.exists():
            raise ModelNotFound(f"model file not found: {label}")
        if not path.is_file():
            raise ModelLoadError(f"{label}: not a regular file")
        try:
            with open(path, "rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError as e:
            raise ModelLoadError(f"{label}: cannot read ({e.strerror or e})") from e
        fmt = _detect_format(head, path.suffix, label)
        source = ModelSource(format=fmt, label=label, path=path)
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        fmt = _detect_format(data[:_SNIFF_BYTES], "", f"<{len(data)} bytes>")
        source = ModelSource(format=fmt, label=f"<{len(data)} bytes>", data=data)
    elif type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        try:
            data = model.SerializeToString()
        except ValueError as e:  # message over 2 GiB
            raise ModelLoadError(f"<onnx.ModelProto>: cannot serialize ({e}); save it with "
                                 "external data and load the path instead") from e
        source = ModelSource(format="onnx", label="<onnx.ModelProto>", data=data, _proto=model)
    else:
        raise ModelLoadError(
            f"cannot load a model from {type(model).__name__}; expected a path, bytes or an "
            "onnx.ModelProto"
        )
    if source.size == 0:
        raise ModelLoadError(f"{source.label}: empty file (0 bytes)")
    if source.format == "onnx":
        _check_onnx(source, check=check)
    return source


#: File names of serialized TensorRT engines (their bytes carry no stable magic to sniff).
TENSORRT_SUFFIXES = (".engine", ".plan", ".trt")
#: Leading bytes read to tell a model's format.
_SNIFF_BYTES = 64
#: Formats users hand over by mistake: their leading bytes and what to say of them.
_NOT_MODELS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt, a Keras .keras file, or a model bundle?)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)"),
    (b"\x80\x02", "a Python pickle"), (b"\x80\x04", "a Python pickle"), (b"\x80\x05", "a Python pickle"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x7fELF", "an executable (ELF)"),
)


def sniff_format(head: bytes) -> str | None:
    """The model format that a file's first bytes show: ``"tflite"`` (the FlatBuffer identifier
    ``TFL3`` at offset 4), ``"onnx"`` (a protobuf whose first field is ModelProto's ``ir_version``,
    field 1, as every ONNX writer serialises it), else None."""
    if head[4:8] == _TFLITE_MAGIC:
        return "tflite"
    if head[:1] == b"\x08" and len(head) > 1 and 0 < head[1] < 0x80:  # ir_version: a small varint
        return "onnx"
    return None


def describe_content(head: bytes) -> str:
    """What a file that is no model looks like, for an error message."""
    for magic, what in _NOT_MODELS:
        if head.startswith(magic):
            return what
    if not head:
        return "empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of no format deploykit knows"
    shown = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"text ({shown!r}...)" if shown else "blank text"


def _detect_format(head: bytes, suffix: str, label: str) -> str:
    """The format by content; by the name only when the content is no known format and the name
    says ONNX (a protobuf may open with another field; the parser then decides)."""
    found = sniff_format(head)
    if found is not None:
        if suffix.lower() in (".onnx", ".tflite") and suffix.lower() != f".{found}":
            log.info("%s: the content is %s, whatever the name says", label, found)
        return found
    if suffix.lower() in TENSORRT_SUFFIXES:  # a serialized TensorRT engine: only TensorRT reads it
        return "tensorrt"
    if suffix.lower() == ".tflite":
        raise ModelLoadError(f"{label}: not a TFLite model (no TFL3 FlatBuffer identifier at byte 4); it "
                             f"looks like {describe_content(head)}")
    for magic, what in _NOT_MODELS:
        if head.startswith(magic):
            raise ModelLoadError(f"{label}: not a model deploykit loads (ONNX or TFLite); it looks like "
                                 f"{what}")
    return "onnx"


def _check_onnx(source: ModelSource, *, check: CheckMode) -> None:
    """Parse the ONNX protobuf and reject what is not a runnable model, with the reason."""
    import onnx
    from google.protobuf.message import DecodeError

    if source._proto is None:
        try:
            if source.path is not None:
                if source.size > _PROTO_LIMIT:
                    raise ModelLoadError(f"{source.label}: {source.size} bytes is over the 2 GiB "
                                         "protobuf limit; store the weights as external data")
                proto = onnx.load_model(str(source.path), load_external_data=False)
            else:
                proto = onnx.load_model_from_string(source.data or b"")
        except DecodeError as e:
            head = _head(source)
            looks = "" if sniff_format(head) == "onnx" else f"; it looks like {describe_content(head)}"
            raise ModelLoadError(
                f"{source.label}: not a valid ONNX file (protobuf decode failed: {e}); the file "
                f"may be truncated or corrupted{looks}"
            ) from e
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{source.label}: cannot parse as ONNX: {e}") from e
        source._proto = proto
    proto = source._proto
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelLoadError(f"{source.label}: not an ONNX model (no IR version or no graph); "
                             "is this the right file?")
    if not proto.graph.output:
        raise ModelLoadError(f"{source.label}: the ONNX graph declares no outputs")
    check_tensors(source.label, proto, source.path.parent.resolve() if source.path is not None else None)
    if check:
        try:
            if source.path is not None:
                onnx.checker.check_model(str(source.path))
            else:
                onnx.checker.check_model(proto)
        except (onnx.checker.ValidationError, ValueError) as e:
            first = first_line(e)
            if check == "strict":
                raise ModelLoadError(f"{source.label}: fails the ONNX checker: {first}") from e
            log.warning("%s: the ONNX checker reports: %s (loading anyway; check='strict' "
                        "refuses such models)", source.label, first)


def _head(source: ModelSource) -> bytes:
    if source.path is None:
        return (source.data or b"")[:_SNIFF_BYTES]
    with open(source.path, "rb") as f:
        return f.read(_SNIFF_BYTES)


def onnx_io_specs(proto: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output TensorSpecs of an ONNX graph; initializer-backed inputs are not inputs."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = [_value_spec(v) for v in proto.graph.input if v.name not in inits]
    outputs = [_value_spec(v) for v in proto.graph.output]
    return inputs, outputs


def _value_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    from onnx.helper import tensor_dtype_to_np_dtype

    which = value.type.WhichOneof("value")
    if which in ("sequence_type", "map_type", "optional_type"):
        return TensorSpec(value.name, None, np.dtype(object), kind=which.removesuffix("_type"))
    ttype = value.type.tensor_type
    try:
        dtype = np.dtype(tensor_dtype_to_np_dtype(ttype.elem_type))
    except (KeyError, TypeError, ValueError):
        dtype = np.dtype(object)
    shape = None
    if ttype.HasField("shape"):
        shape = tuple(
            normalize_dim(d.dim_value if d.HasField("dim_value")
                          else d.dim_param if d.HasField("dim_param") else None)
            for d in ttype.shape.dim
        )
    return TensorSpec(value.name, shape, dtype)
