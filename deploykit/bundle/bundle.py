"""A bundle opened and verified: the folder (an archive is unpacked first), its manifest, and what it
carries beside the artifacts — the preprocessing ``Pipeline`` and the labels. Nothing in it is parsed
before every file's size and sha256 match the manifest (and, when asked, the signature verifies)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, InvalidArgument, ModelNotFound
from ..preprocess import Pipeline
from ..reprs import html_table, text_rows
from . import integrity, signing
from .archive import is_archive, unpack
from .manifest import MANIFEST, SIGNATURE, Manifest, read

#: Labels files and Pipeline specs larger than this are refused (they are text, not weights).
MAX_TEXT_FILE = 4 << 20


@dataclass
class Bundle:
    """A verified bundle: ``folder`` holds exactly the files ``manifest`` lists."""

    folder: Path
    label: str
    manifest: Manifest
    signed: bool = False
    verified_signature: bool = False

    @property
    def artifacts(self) -> list[Path]:
        return [self.folder / a for a in self.manifest.artifacts]

    def pipeline(self) -> Pipeline | None:
        """The preprocessing the bundle carries (None when it carries none)."""
        if self.manifest.pipeline is None:
            return None
        return Pipeline.from_json(_text(self.folder / self.manifest.pipeline, self.label))

    def labels(self) -> list[str] | None:
        """The labels, one per line (None when the bundle carries none)."""
        if self.manifest.labels is None:
            return None
        return split_lines(_text(self.folder / self.manifest.labels, self.label))

    def _rows(self) -> list[tuple[str, str]]:
        m = self.manifest
        rows = [(k, v) for k, v in m.meta.items()]
        rows += [("artifact", a) for a in m.artifacts]
        rows += [("pipeline", m.pipeline or "-"), ("labels", m.labels or "-")]
        rows += [("input", _spec(s)) for s in m.inputs] + [("output", _spec(s)) for s in m.outputs]
        total = sum(f.size for f in m.files.values())
        rows += [("files", f"{len(m.files)} ({total:,} bytes), digests verified"),
                 ("signature", "verified" if self.verified_signature else
                  "present, not verified (pass verify=)" if self.signed else "none")]
        return rows

    def __str__(self) -> str:
        return text_rows(f"deploykit bundle {self.label}", self._rows())

    def _repr_html_(self) -> str:
        return html_table("deploykit bundle", self._rows(), subtitle=self.label)


def _spec(spec: dict[str, Any]) -> str:
    shape = ",".join("?" if d is None else str(d) for d in spec.get("shape") or [])
    return f"{spec.get('name')}: {spec.get('dtype', '?')}[{shape}]"


def _text(path: Path, label: str) -> str:
    if path.stat().st_size > MAX_TEXT_FILE:
        raise IntegrityError(f"{label}: {path.name} is over {MAX_TEXT_FILE} bytes; labels and pipeline specs "
                             "are small text files")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise IntegrityError(f"{label}: {path.name} is not UTF-8 text ({e})") from e


def split_lines(text: str) -> list[str]:
    """Lines split at ``\n`` only (a label may hold any other character), one final newline dropped."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def is_bundle(model: Any) -> bool:
    """True for a folder holding ``deploykit.json`` or a ``.zip``/``.tar`` file (a bundle archive)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    path = Path(model)
    return (path.is_dir() and (path / MANIFEST).exists()) or (is_archive(path) and path.is_file())


def open_bundle(model: str | os.PathLike[str], *, verify: str | os.PathLike[str] | None = None) -> Bundle:
    """The bundle at ``model`` (a folder or an archive), its files checked against the manifest and,
    with ``verify`` (a public key file), its signature checked; ``IntegrityError`` naming what fails."""
    path = Path(model)
    label = str(model)
    if not path.exists():
        raise ModelNotFound(f"bundle not found: {path}")
    if verify is not None and not isinstance(verify, (str, os.PathLike)):
        raise InvalidArgument(f"verify must be the path of a public key (PEM), got {type(verify).__name__}")
    folder = unpack(path, label) if path.is_file() else path
    try:
        manifest = read(folder, label)
        integrity.verify(folder, manifest, label)
    except IntegrityError:
        if path.is_file():  # our unpacked copy: gone, so a fixed archive (or our tampered copy) unpacks anew
            shutil.rmtree(folder, ignore_errors=True)
        raise
    signed = (folder / SIGNATURE).is_file()
    if verify is not None:
        signing.verify(folder, verify, label)
    return Bundle(folder, label, manifest, signed, verify is not None)


__all__ = ["MAX_TEXT_FILE", "Bundle", "is_bundle", "open_bundle", "split_lines"]
