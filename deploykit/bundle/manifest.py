"""``deploykit.json``: what a bundle holds — its artifacts (several formats or precisions of one
model), the preprocessing ``Pipeline``, labels, I/O specs, tuning hints, metadata — and every file
with its size and sha256. Read strictly: a manifest is data from whoever made the bundle, so every
field is checked for type, size and path before anything else is opened."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import IntegrityError

MANIFEST = "deploykit.json"
SIGNATURE = "deploykit.sig"
FORMAT, FORMAT_VERSION = "deploykit-bundle", 1
#: Bounds on what a manifest may declare (a hostile one could declare anything).
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILES = 1000
MAX_DEPTH = 8
MAX_TEXT = 512
#: What an artifact may be: model files only (a manifest or an archive would reach past the bundle).
MODEL_SUFFIXES = (".onnx", ".tflite", ".engine", ".plan", ".trt")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
META_FIELDS = ("name", "version", "created_by", "created_at", "source_framework", "description")


@dataclass
class FileEntry:
    """One file of the bundle: its size in bytes and the hex sha256 of its bytes."""

    size: int
    sha256: str


@dataclass
class Manifest:
    """The parsed ``deploykit.json`` (paths relative to the bundle, POSIX-style)."""

    artifacts: list[str]
    files: dict[str, FileEntry]
    pipeline: str | None = None
    labels: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    tuning: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        data.update({k: v for k, v in self.meta.items() if not k.startswith("metadata.")})
        data["metadata"] = {k.removeprefix("metadata."): v for k, v in self.meta.items()
                            if k.startswith("metadata.")}
        data.update({"artifacts": self.artifacts, "pipeline": self.pipeline, "labels": self.labels,
                     "inputs": self.inputs, "outputs": self.outputs, "tuning": self.tuning,
                     "files": {k: asdict(v) for k, v in sorted(self.files.items())}})
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


def check_path(path: Any, what: str, label: str) -> str:
    """A bundle-relative path as the manifest may name it: relative POSIX, no ``..``, no backslash,
    no drive, at most ``MAX_DEPTH`` deep — else ``IntegrityError`` naming it."""
    if not isinstance(path, str) or not path or len(path) > MAX_TEXT:
        raise IntegrityError(f"{label}: {what} must be a relative path, got {str(path)[:80]!r}")
    pure = PurePosixPath(path)
    if ("\\" in path or ":" in pure.parts[0] or pure.is_absolute() or ".." in pure.parts
            or any(p in ("", ".") for p in path.split("/")) or len(pure.parts) > MAX_DEPTH
            or "\x00" in path):
        raise IntegrityError(f"{label}: {what} {path!r} leaves the bundle or is not a plain relative path")
    return path


def parse(data: bytes, label: str) -> Manifest:
    """The manifest from the bytes of ``deploykit.json``; ``IntegrityError`` naming what is wrong."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"{label}: {MANIFEST} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} "
                             "allowed")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise IntegrityError(f"{label}: {MANIFEST} is not valid JSON ({e})") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IntegrityError(f'{label}: {MANIFEST} is not a deploykit bundle manifest (no "format": '
                             f'"{FORMAT}")')
    if raw.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"{label}: bundle format_version {raw.get('format_version')!r}; this deploykit "
                             f"reads {FORMAT_VERSION}")
    files = _files(raw.get("files"), label)
    artifacts = raw.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts or len(artifacts) > 16:
        raise IntegrityError(f"{label}: artifacts must list 1 to 16 model files, got {str(artifacts)[:80]}")
    named = [check_path(a, "artifact", label) for a in artifacts]
    for path in named:
        if PurePosixPath(path).suffix.lower() not in MODEL_SUFFIXES:
            raise IntegrityError(f"{label}: artifact {path} is not a model file "
                                 f"({', '.join(MODEL_SUFFIXES)})")
    optional = {k: check_path(raw[k], k, label) if raw.get(k) is not None else None
                for k in ("pipeline", "labels")}
    for path in [*named, *(p for p in optional.values() if p)]:
        if path not in files:
            raise IntegrityError(f"{label}: {path} is named by the manifest but not listed in its files")
    meta = {k: _text(raw[k], k, label) for k in META_FIELDS if raw.get(k) is not None}
    extra = raw.get("metadata", {})
    if not isinstance(extra, dict) or len(extra) > 64:
        raise IntegrityError(f"{label}: metadata must be an object of at most 64 strings")
    meta.update({f"metadata.{_text(k, 'metadata key', label)}": _text(v, f"metadata[{k!r}]", label)
                 for k, v in extra.items()})
    return Manifest(named, files, optional["pipeline"], optional["labels"],
                    _specs(raw.get("inputs", []), "inputs", label),
                    _specs(raw.get("outputs", []), "outputs", label),
                    _object(raw.get("tuning", {}), "tuning", label), meta)


def _files(raw: Any, label: str) -> dict[str, FileEntry]:
    if not isinstance(raw, dict) or not raw or len(raw) > MAX_FILES:
        raise IntegrityError(f"{label}: files must map 1 to {MAX_FILES} paths to their size and sha256")
    files: dict[str, FileEntry] = {}
    for path, entry in raw.items():
        check_path(path, "file", label)
        if path in (MANIFEST, SIGNATURE):
            raise IntegrityError(f"{label}: files must not list {path} itself")
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > 1 << 40:
            raise IntegrityError(f"{label}: files[{path!r}].size must be a byte count, got {size!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise IntegrityError(f"{label}: files[{path!r}].sha256 must be 64 lowercase hex digits")
        files[path] = FileEntry(size, digest)
    folders = {str(p) for path in files for p in PurePosixPath(path).parents if str(p) != "."}
    clash = sorted(folders & set(files))
    if clash:
        raise IntegrityError(f"{label}: {clash[0]} is listed both as a file and as a folder")
    return files


def _text(value: Any, what: str, label: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise IntegrityError(f"{label}: {what} must be text of at most {MAX_TEXT} characters")
    return value


def _object(value: Any, what: str, label: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(json.dumps(value)) > 64 * 1024:
        raise IntegrityError(f"{label}: {what} must be a JSON object (at most 64 KiB)")
    return value


def _specs(value: Any, what: str, label: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > 256 or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("dtype", ""), str)
            and (s.get("shape") is None or (isinstance(s["shape"], list) and len(s["shape"]) <= 64 and all(
                d is None or isinstance(d, (int, str)) for d in s["shape"]))) for s in value):
        raise IntegrityError(f"{label}: {what} must be a list of {{name, dtype, shape}} objects")
    return value


def read(folder: Path, label: str) -> Manifest:
    """The manifest of the bundle folder (``deploykit.json`` must be a regular file, not a link)."""
    path = folder / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise IntegrityError(f"{label}: no {MANIFEST} (a regular file) in the bundle")
    with open(path, "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    return parse(data, label)


__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "META_FIELDS", "MODEL_SUFFIXES", "SIGNATURE", "FileEntry",
           "Manifest",
           "check_path", "parse", "read"]
