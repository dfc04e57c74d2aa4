"""A bundle shipped as one ``.zip`` or ``.tar`` (``.tar.gz``, ``.tgz``) file, unpacked safely into
deploykit's cache: members with absolute or ``..`` paths, links, devices and pipes are refused, and
so are decompression bombs — more than ``MAX_BYTES`` in all, or a member that expands more than
``MAX_RATIO`` times (past 1 MiB) — counted on the bytes actually written, not on what the archive
declares. Nothing is written outside a fresh folder, which replaces the cached copy only once it is
complete; the digests are checked after, as for any bundle folder."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..cachedir import cache_dir
from ..errors import IntegrityError
from .integrity import sha256_of
from .manifest import MAX_FILES, check_path

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
#: The most a bundle archive may expand to, and the most one member may expand relative to its
#: compressed size (past ``_RATIO_FLOOR`` bytes: small files compress far better than models do).
MAX_BYTES = 8 << 30
MAX_RATIO = 200
_RATIO_FLOOR = 1 << 20
#: The most a tar's extended (pax, GNU long-name) header may hold.
MAX_HEADER_BYTES = 1 << 20
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def unpack(archive: Path, label: str) -> Path:
    """The archive unpacked into ``<cache>/bundles/<its sha256>`` (reused when already there)."""
    target = cache_dir() / "bundles" / sha256_of(archive)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        if archive.name.lower().endswith(".zip"):
            _unzip(archive, staging, label)
        else:
            _untar(archive, staging, label)
        try:
            os.rename(staging, target)
        except OSError:  # another process unpacked the same archive first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class _Budget:
    """Bytes written so far against ``MAX_BYTES``."""

    def __init__(self, label: str) -> None:
        self.used, self.label = 0, label

    def take(self, n: int, member: str) -> None:
        self.used += n
        if self.used > MAX_BYTES:
            raise IntegrityError(f"{self.label}: the archive expands past {MAX_BYTES} bytes at {member} "
                                 "(a decompression bomb?)")


def _copy(source: IO[bytes], path: Path, member: str, packed: int, budget: _Budget,
          declared: int | None) -> None:
    written = 0
    with open(path, "xb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            budget.take(len(chunk), member)
            if declared is not None and written > declared:
                raise IntegrityError(f"{budget.label}: {member} holds more bytes than the archive declares")
            if written > _RATIO_FLOOR and written > MAX_RATIO * max(packed, 1):
                raise IntegrityError(f"{budget.label}: {member} expands more than {MAX_RATIO}x "
                                     "(a decompression bomb?)")
            out.write(chunk)


def _place(staging: Path, name: str, label: str) -> Path:
    rel = check_path(name.rstrip("/"), "archive member", label)
    path = staging / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if staging.resolve() not in path.resolve().parents:
        raise IntegrityError(f"{label}: archive member {name!r} would land outside the bundle")
    return path


def _members(count: int, label: str) -> None:
    if count > MAX_FILES + 2:
        raise IntegrityError(f"{label}: the archive holds {count} members, over the {MAX_FILES} allowed")


def _unzip(archive: Path, staging: Path, label: str) -> None:
    budget = _Budget(label)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _members(len(infos), label)
            for info in infos:
                kind = stat.S_IFMT(info.external_attr >> 16)
                if info.is_dir():
                    check_path(info.filename.rstrip("/"), "archive member", label)
                    continue
                if kind not in (0, stat.S_IFREG):
                    raise IntegrityError(f"{label}: archive member {info.filename!r} is a link or special "
                                         "file; bundles hold regular files only")
                path = _place(staging, info.filename, label)
                with zf.open(info) as source:
                    _copy(source, path, info.filename, info.compress_size, budget, info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError,
            zlib.error) as e:
        if isinstance(e, FileExistsError):
            raise IntegrityError(f"{label}: the archive holds the same member twice") from e
        raise IntegrityError(f"{label}: not a readable zip archive ({type(e).__name__}: {e})") from e


def _tar_members(tf: tarfile.TarFile, label: str) -> Iterator[tarfile.TarInfo]:
    for count, info in enumerate(tf, 1):  # streamed: a tar declares no member count up front
        _members(count, label)
        yield info


def _scan_tar_headers(archive: Path, label: str) -> None:
    """Every tar header read before ``tarfile`` does: ``tarfile`` loads a pax or GNU long-name
    header's whole declared size into memory, so a few-KiB archive could ask for gigabytes."""
    import gzip
    opener = gzip.open if archive.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(archive, "rb") as stream:
        while True:
            header = stream.read(512)
            if len(header) < 512 or header == bytes(512):
                return
            try:
                size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
            except ValueError:
                return  # tarfile itself will refuse the header
            if header[156:157] in (b"x", b"g", b"L", b"K") and size > MAX_HEADER_BYTES:
                raise IntegrityError(f"{label}: a tar header declares {size} bytes of extended names; over "
                                     f"the {MAX_HEADER_BYTES} allowed")
            left = (size + 511) // 512 * 512
            while left:
                chunk = stream.read(min(left, _CHUNK))
                if not chunk:
                    return
                left -= len(chunk)


def _untar(archive: Path, staging: Path, label: str) -> None:
    budget = _Budget(label)
    packed = archive.stat().st_size
    try:
        _scan_tar_headers(archive, label)
    except (OSError, EOFError, zlib.error) as e:
        raise IntegrityError(f"{label}: not a readable tar archive ({type(e).__name__}: {e})") from e
    try:
        with tarfile.open(archive, "r:*") as tf:
            for info in _tar_members(tf, label):
                if info.isdir():
                    check_path(info.name.rstrip("/"), "archive member", label)
                    continue
                if not info.isreg():
                    raise IntegrityError(f"{label}: archive member {info.name!r} is a link or special file; "
                                         "bundles hold regular files only")
                path = _place(staging, info.name, label)
                source = tf.extractfile(info)
                if source is None:
                    raise IntegrityError(f"{label}: archive member {info.name!r} cannot be read")
                with source:
                    _copy(source, path, info.name, packed, budget, info.size)
    except IntegrityError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:
        if isinstance(e, FileExistsError):
            raise IntegrityError(f"{label}: the archive holds the same member twice") from e
        raise IntegrityError(f"{label}: not a readable tar archive ({type(e).__name__}: {e})") from e


def write(folder: Path, archive: Path, kind: str) -> None:
    """The bundle folder as one archive of ``kind`` (a name ending in one of ``SUFFIXES``), members in
    sorted order."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    kind = kind.lower()
    if kind.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, path.relative_to(folder).as_posix())
        return
    mode = "w:gz" if kind.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tf:  # type: ignore[call-overload]
        for path in files:
            tf.add(path, path.relative_to(folder).as_posix(), recursive=False)


__all__ = ["MAX_BYTES", "MAX_RATIO", "SUFFIXES", "is_archive", "unpack", "write"]
