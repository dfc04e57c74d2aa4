"""``dk.pack``: one model's artifacts (ONNX with its external data, TFLite, other precisions), its
preprocessing ``Pipeline``, labels and metadata made into one bundle — a folder, or the same as one
``.zip``/``.tar`` file — with every file's size and sha256 in ``deploykit.json``, optionally signed."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from ..artifacts import open_artifacts
from ..errors import InvalidArgument, first_line
from ..preprocess import Pipeline
from ..spec import TensorSpec, dtype_name
from ..version import __version__
from . import archive, signing
from .bundle import MAX_TEXT_FILE, Bundle, open_bundle, split_lines
from .integrity import present_files, sha256_of
from .manifest import MANIFEST, MAX_TEXT, META_FIELDS, MODEL_SUFFIXES, FileEntry, Manifest, parse

MODEL_FOLDER = "model"


def pack(models: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
         pipeline: Pipeline | str | os.PathLike[str] | None = None,
         labels: Sequence[str] | str | os.PathLike[str] | None = None,
         metadata: Mapping[str, str] | None = None, tuning: Mapping[str, Any] | None = None,
         sign_key: str | os.PathLike[str] | None = None, password: str | bytes | None = None,
         overwrite: bool = False) -> Bundle:
    """Bundle the artifacts of one model (a path or a list: several formats or precisions, checked
    compatible as ``dk.load([...])`` checks them) with ``pipeline`` (a Pipeline or its JSON file),
    ``labels`` (a list or a text file, one per line), ``metadata`` (name, version, created_by,
    source_framework, description, or any other text) and ``tuning`` hints (``dk.tune`` settings), at
    ``output``: a new folder, or a ``.zip``/``.tar``/``.tar.gz`` file. ``sign_key``: an EC private key
    (PEM; ``password`` if it is encrypted) to sign it with (extra ``[sign]``). Returns the bundle,
    opened and verified."""
    given = [models] if isinstance(models, (str, os.PathLike)) else \
        list(models) if isinstance(models, (list, tuple)) else []
    if not given or not all(isinstance(m, (str, os.PathLike)) for m in given):
        raise InvalidArgument("models must be the path of a model file or a list of them")
    paths = [Path(m) for m in given]
    for path in paths:
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise InvalidArgument(f"models: {path.name} is not a model file ({', '.join(MODEL_SUFFIXES)}); "
                                  "give the artifacts themselves")
    target = _output(output, overwrite)
    if any(target.resolve() == p.resolve().parent or target.resolve() in p.resolve().parents for p in paths):
        raise InvalidArgument(f"output {target} holds one of the models; write the bundle elsewhere")
    arts = open_artifacts([str(p) for p in paths] if len(paths) > 1 else str(paths[0]), check=True)
    inputs, outputs = arts.io_specs() or ([], [])
    staging = Path(tempfile.mkdtemp(prefix="deploykit-pack-"))
    try:
        names = _copy_artifacts(paths, staging)
        manifest = Manifest(names, {}, inputs=[_spec(s) for s in inputs], outputs=[_spec(s) for s in outputs],
                            tuning=dict(tuning or {}), meta=_meta(metadata))
        if pipeline is not None:
            spec = pipeline if isinstance(pipeline, Pipeline) else Pipeline.load(pipeline)
            (staging / "pipeline.json").write_text(spec.to_json() + "\n")
            manifest.pipeline = "pipeline.json"
        if labels is not None:
            (staging / "labels.txt").write_bytes(("\n".join(_labels(labels)) + "\n").encode("utf-8"))
            manifest.labels = "labels.txt"
        manifest.files = {rel: FileEntry(size, sha256_of(staging / rel))
                          for rel, size in present_files(staging, "pack").items()}
        try:
            text = manifest.to_json()
            parse(text.encode(), "pack")  # what dk.load will accept, checked before anything is written
        except (TypeError, ValueError) as e:  # IntegrityError is a ValueError; JSON refuses arrays
            raise InvalidArgument(f"the bundle would not load: {first_line(e)} (metadata and tuning hints "
                                  "must be small JSON: text, numbers, lists)") from e
        (staging / MANIFEST).write_text(text, encoding="utf-8")
        if sign_key is not None:
            signing.sign(staging, sign_key, password=password)
        if archive.is_archive(target):
            partial = target.with_name(target.name + ".part")
            archive.write(staging, partial, target.name)
            os.replace(partial, target)
        else:
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return open_bundle(target)


def sign(bundle: str | os.PathLike[str], key: str | os.PathLike[str], *,
         password: str | bytes | None = None) -> Path:
    """Sign the bundle folder at ``bundle`` (its files first checked against its manifest) with the
    EC private key at ``key`` (PEM; extra ``[sign]``); returns the signature's path. An archive is
    signed by packing with ``sign_key=`` (the signature travels inside it)."""
    if not isinstance(bundle, (str, os.PathLike)) or not Path(bundle).is_dir():
        raise InvalidArgument(f"bundle must be a bundle folder (sign archives with dk.pack(..., sign_key=)), "
                              f"got {bundle!r}")
    opened = open_bundle(bundle)
    return signing.sign(opened.folder, key, password=password)


def _output(output: Any, overwrite: bool) -> Path:
    if not isinstance(output, (str, os.PathLike)):
        raise InvalidArgument(f"output must be a folder or a .zip/.tar path, got {type(output).__name__}")
    target = Path(output)
    if not target.parent.is_dir():
        raise InvalidArgument(f"output {target}: the folder {target.parent} does not exist")
    if target.is_symlink():
        raise InvalidArgument(f"output {target} is a symbolic link; give a real folder or file path")
    if target.exists() and not overwrite and (target.is_file() or any(target.iterdir())):
        raise InvalidArgument(f"output {target} exists and is not empty (pass overwrite=True to replace it)")
    if target.exists() and target.is_file() != archive.is_archive(target):
        raise InvalidArgument(f"output {target}: a folder, or a file ending in {', '.join(archive.SUFFIXES)}")
    return target


def _copy_artifacts(paths: list[Path], staging: Path) -> list[str]:
    """Each artifact (and an ONNX model's external-data files) under ``model/``; their bundle paths."""
    names: list[str] = []
    for path in paths:
        rel = f"{MODEL_FOLDER}/{path.name}"
        if rel in names:
            raise InvalidArgument(f"models: two artifacts are named {path.name}; rename one")
        (staging / MODEL_FOLDER).mkdir(exist_ok=True)
        shutil.copyfile(path, staging / rel)
        for location in _external_locations(path):
            destination = staging / MODEL_FOLDER / location
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not destination.exists():
                shutil.copyfile(path.parent / location, destination)
            elif sha256_of(destination) != sha256_of(path.parent / location):
                raise InvalidArgument(f"models: {path.name}'s external data {location} differs from another "
                                      "artifact's file of that name; give each model its own file name")
        names.append(rel)
    return names


def _external_locations(path: Path) -> list[str]:
    """The external-data files an ONNX model names (already checked to stay in its folder on open)."""
    if path.suffix.lower() != ".onnx":
        return []
    proto = onnx.load_model(str(path), load_external_data=False)
    found: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        tensors = list(graph.initializer)
        for node in graph.node:
            for attr in node.attribute:
                tensors += [attr.t] if attr.HasField("t") else []
                tensors += list(attr.tensors)
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                found.update(e.value for e in tensor.external_data if e.key == "location")

    walk(proto.graph)
    return sorted(found)


def _spec(spec: TensorSpec) -> dict[str, Any]:
    shape = None if spec.shape is None else [d if isinstance(d, (int, str)) else None for d in spec.shape]
    return {"name": spec.name, "dtype": dtype_name(spec.dtype), "shape": shape}


def _meta(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidArgument(f"metadata must be a dict of text, got {type(metadata).__name__}")
    given = dict(metadata or {})
    for key, value in given.items():
        if not isinstance(key, str) or not isinstance(value, str) or len(value) > MAX_TEXT:
            raise InvalidArgument(f"metadata[{key!r}] must be text of at most {MAX_TEXT} characters")
    meta = {"created_by": f"deploykit {__version__}",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    meta.update({k: v for k, v in given.items() if k in META_FIELDS})
    meta.update({f"metadata.{k}": v for k, v in given.items() if k not in META_FIELDS})
    return meta


def _labels(labels: Any) -> list[str]:
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise InvalidArgument(f"labels: no file at {path}")
        if path.stat().st_size > MAX_TEXT_FILE:
            raise InvalidArgument(f"labels: {path} is over {MAX_TEXT_FILE} bytes; a labels file is text, "
                                  "one per line")
        try:
            return _labels(split_lines(path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"labels: {path} is not UTF-8 text ({e})") from e
    items = list(labels) if isinstance(labels, (list, tuple)) else None
    if not items or not all(isinstance(x, str) and len(x.splitlines() or [""]) == 1 and "\r" not in x
                            for x in items):
        raise InvalidArgument("labels must be a non-empty list of text without line breaks, or a text file")
    if sum(len(x) + 1 for x in items) > MAX_TEXT_FILE:
        raise InvalidArgument(f"labels: over {MAX_TEXT_FILE} bytes of labels")
    return items


__all__ = ["MODEL_FOLDER", "pack", "sign"]
