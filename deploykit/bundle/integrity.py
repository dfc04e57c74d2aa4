"""Every byte of a bundle checked against its manifest before any artifact is parsed: the folder
holds exactly the files listed (plus the manifest and its signature), each a regular file — no
links, devices or pipes — of the listed size and sha256."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import IntegrityError
from .manifest import MANIFEST, MAX_DEPTH, MAX_FILES, SIGNATURE, FileEntry, Manifest

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def present_files(folder: Path, label: str) -> dict[str, int]:
    """Bundle-relative path -> size of every regular file under ``folder``; a link, a device, a pipe,
    too many files or too deep a tree is ``IntegrityError`` naming it."""
    found: dict[str, int] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        depth = len(here.relative_to(folder).parts)
        for name in sorted(dirs + names):
            path = here / name
            rel = path.relative_to(folder).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise IntegrityError(f"{label}: {rel} is a symbolic link; bundles hold regular files only")
            if stat.S_ISDIR(mode):
                if depth + 1 > MAX_DEPTH:
                    raise IntegrityError(f"{label}: {rel} is nested deeper than {MAX_DEPTH} folders")
                continue
            if not stat.S_ISREG(mode):
                raise IntegrityError(f"{label}: {rel} is not a regular file (a device, pipe or socket)")
            found[rel] = os.lstat(path).st_size
            if len(found) > MAX_FILES + 2:
                raise IntegrityError(f"{label}: more than {MAX_FILES} files in the bundle")
    return found


def verify(folder: Path, manifest: Manifest, label: str) -> None:
    """The folder's files are exactly the manifest's, sizes first (cheap), then digests."""
    found = present_files(folder, label)
    found.pop(MANIFEST, None)
    found.pop(SIGNATURE, None)
    missing = sorted(set(manifest.files) - set(found))
    if missing:
        raise IntegrityError(f"{label}: {missing[0]} is listed in {MANIFEST} but missing from the bundle")
    extra = sorted(set(found) - set(manifest.files))
    if extra:
        raise IntegrityError(f"{label}: {extra[0]} is in the bundle but not listed in {MANIFEST} "
                             "(an added file)")
    for rel, entry in sorted(manifest.files.items()):
        if found[rel] != entry.size:
            raise IntegrityError(f"{label}: {rel} is {found[rel]} bytes; {MANIFEST} says {entry.size}")
    for rel, entry in sorted(manifest.files.items()):
        _check_digest(folder / rel, rel, entry, label)


def _check_digest(path: Path, rel: str, entry: FileEntry, label: str) -> None:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise IntegrityError(f"{label}: {rel} has changed (sha256 {actual[:16]}..., {MANIFEST} says "
                             f"{entry.sha256[:16]}...)")


__all__ = ["present_files", "sha256_of", "verify"]
