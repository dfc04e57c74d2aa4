"""Hostile bundles: archive members that escape (``..``, absolute), links, devices, duplicate members,
decompression bombs (by ratio and by total), manifests that lie or are not manifests, paths that
leave the bundle, symlinked files. Each is an ``IntegrityError`` with a clear message, nothing is
written outside the unpack folder, and the process lives on."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.bundle import archive
from deploykit.bundle.manifest import parse
from deploykit.demo import MODEL_PATH


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))


def _manifest_bytes(tmp_path: Path) -> bytes:
    dk.pack(MODEL_PATH, tmp_path / "good")
    return (tmp_path / "good" / "deploykit.json").read_bytes()


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for info in members:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _outside_untouched(tmp_path: Path) -> None:
    """No escaped file anywhere an escape could land: beside the archive, in or beside the unpack
    folders of the cache, or at the absolute path."""
    assert not Path("/tmp/deploykit-escaped.txt").exists()
    assert not [p for p in tmp_path.rglob("escaped.txt")], list(tmp_path.rglob("escaped.txt"))


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/deploykit-escaped.txt", "a/../../escaped.txt",
                                  "C:/escaped.txt", "a\\..\\escaped.txt"])
def test_zip_members_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    path = _zip(tmp_path / "evil.zip", [("deploykit.json", _manifest_bytes(tmp_path)), (name, b"x")])
    with pytest.raises(dk.IntegrityError, match=r"leaves the bundle|outside"):
        dk.load(path)
    _outside_untouched(tmp_path)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                                  tarfile.FIFOTYPE])
def test_tar_links_and_special_files_are_refused(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("model/digits.onnx")
    info.type, info.linkname = kind, "/etc/passwd"
    path = _tar(tmp_path / "evil.tar", [info])
    with pytest.raises(dk.IntegrityError, match="is a link or special file"):
        dk.load(path)


def test_tar_members_that_escape_are_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("../escaped.txt")
    path = _tar(tmp_path / "evil.tar", [info], {"../escaped.txt": b"x"})
    with pytest.raises(dk.IntegrityError, match="leaves the bundle"):
        dk.load(path)
    _outside_untouched(tmp_path)


def test_a_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("model/digits.onnx")
    info.external_attr = (0o120777 << 16)  # a symbolic link, as zip tools record one
    path = _zip(tmp_path / "evil.zip", [(info, b"/etc/passwd")])
    with pytest.raises(dk.IntegrityError, match="is a link or special file"):
        dk.load(path)


def test_a_decompression_bomb_is_stopped_by_ratio(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", [("deploykit.json", b"{}"), ("model/zeros.bin", bytes(64 << 20))])
    assert path.stat().st_size < 200_000  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(dk.IntegrityError, match="expands more than 200x"):
        dk.load(path)


def test_a_bomb_is_stopped_by_total_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_BYTES", 1 << 20)
    rng = os.urandom  # incompressible: the ratio test cannot stop it, the total must
    path = _zip(tmp_path / "big.zip", [(f"model/part{k}.bin", rng(300_000)) for k in range(5)])
    with pytest.raises(dk.IntegrityError, match="expands past 1048576 bytes"):
        dk.load(path)


def test_a_zip_member_larger_than_declared_is_stopped(tmp_path: Path) -> None:
    path = _zip(tmp_path / "liar.zip", [("deploykit.json", b"{}"), ("model/w.bin", b"a" * 5000)])
    data = bytearray(path.read_bytes())
    # lower the declared uncompressed size (local header and central directory) from 5000 to 10
    data = bytearray(data.replace((5000).to_bytes(4, "little"), (10).to_bytes(4, "little")))
    path.write_bytes(bytes(data))
    with pytest.raises(dk.IntegrityError, match=r"more bytes than the archive declares|not a readable zip"):
        dk.load(path)


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _zip(tmp_path / "dup.zip", [("labels.txt", b"a"), ("labels.txt", b"b")])
    with pytest.raises(dk.IntegrityError, match="same member twice"):
        dk.load(path)


def test_garbage_with_an_archive_name_is_refused(tmp_path: Path) -> None:
    for name in ("junk.zip", "junk.tar", "junk.tar.gz"):
        (tmp_path / name).write_bytes(os.urandom(4096))
        with pytest.raises(dk.IntegrityError, match="not a readable"):
            dk.load(tmp_path / name)


def test_a_symlinked_file_in_a_bundle_folder_is_refused(tmp_path: Path) -> None:
    dk.pack(MODEL_PATH, tmp_path / "b", labels=["a"])
    (tmp_path / "b" / "labels.txt").unlink()
    (tmp_path / "b" / "labels.txt").symlink_to("/etc/hostname")
    with pytest.raises(dk.IntegrityError, match=r"labels\.txt is a symbolic link"):
        dk.load(tmp_path / "b")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(artifacts=["../digits.onnx"]), "leaves the bundle"),
    (lambda m: m.update(artifacts=["/etc/passwd"]), "leaves the bundle"),
    (lambda m: m["files"].update({"../x": {"size": 1, "sha256": "0" * 64}}), "leaves the bundle"),
    (lambda m: m["files"]["model/digits.onnx"].update(size=-1), "size must be a byte count"),
    (lambda m: m["files"]["model/digits.onnx"].update(sha256="abc"), "64 lowercase hex"),
    (lambda m: m.update(artifacts=["model/other.onnx"]), "not listed in its files"),
    (lambda m: m.update(format="zip"), "not a deploykit bundle manifest"),
    (lambda m: m.update(format_version=99), "format_version 99"),
    (lambda m: m.update(artifacts=[]), "artifacts must list"),
    (lambda m: m.update(name="x" * 10_000), "name must be text"),
    (lambda m: m.update(inputs="images"), "inputs must be a list"),
    (lambda m: m["files"].update({"deploykit.json": {"size": 1, "sha256": "0" * 64}}), "must not list"),
])
def test_lying_or_malformed_manifests_are_refused(tmp_path: Path, edit: object, match: str) -> None:
    manifest = json.loads(_manifest_bytes(tmp_path))
    edit(manifest)  # type: ignore[operator]
    (tmp_path / "good" / "deploykit.json").write_text(json.dumps(manifest))
    with pytest.raises(dk.IntegrityError, match=match):
        dk.load(tmp_path / "good")


@pytest.mark.parametrize("data, match", [
    (b"\xff\xfe not utf-8", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|not a deploykit"),
    (b" " * ((1 << 20) + 1), "over the 1048576 allowed"),
    (b'{"format": "deploykit-bundle", "format_version": 1, "files": []}', "files must map"),
])
def test_manifest_bytes_that_are_not_a_manifest(data: bytes, match: str) -> None:
    with pytest.raises(dk.IntegrityError, match=match):
        parse(data, "m")


def test_a_tar_header_declaring_huge_extended_names_is_refused_before_it_is_read(tmp_path: Path) -> None:
    import gzip
    header = bytearray(512)
    header[0:10] = b"PaxHeaders"
    header[124:136] = b"%011o\0" % 400_000_000  # 400 MB of "pax" data declared
    header[156:157] = b"x"
    header[257:263] = b"ustar\0"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    path = tmp_path / "pax.tar.gz"
    with gzip.open(path, "wb") as out:
        out.write(bytes(header) + bytes(4 << 20))
    with pytest.raises(dk.IntegrityError, match="tar header declares 400000000 bytes"):
        dk.load(path)


def test_a_bundle_artifact_must_be_a_model_file(tmp_path: Path) -> None:
    manifest = json.loads(_manifest_bytes(tmp_path))
    (tmp_path / "good" / "model" / "m.json").write_text(json.dumps({"artifacts": ["/etc/hostname"]}))
    from deploykit.bundle.integrity import sha256_of
    manifest["files"]["model/m.json"] = {"size": (tmp_path / "good" / "model" / "m.json").stat().st_size,
                                         "sha256": sha256_of(tmp_path / "good" / "model" / "m.json")}
    manifest["artifacts"] = ["model/m.json"]
    (tmp_path / "good" / "deploykit.json").write_text(json.dumps(manifest))
    with pytest.raises(dk.IntegrityError, match=r"artifact model/m\.json is not a model file"):
        dk.load(tmp_path / "good")
    with pytest.raises(dk.InvalidArgument, match=r"m\.json is not a model file"):
        dk.pack(tmp_path / "good" / "model" / "m.json", tmp_path / "other")


def test_a_tampered_unpacked_copy_is_dropped_and_unpacked_again(tmp_path: Path) -> None:
    dk.pack(MODEL_PATH, tmp_path / "b.zip")
    dk.load(tmp_path / "b.zip")
    (copy,) = (tmp_path / "cache" / "bundles").iterdir()
    (copy / "model" / "digits.onnx").write_bytes(b"x")  # someone changed the cached copy
    with pytest.raises(dk.IntegrityError, match=r"digits\.onnx is 1 bytes"):
        dk.load(tmp_path / "b.zip")
    again = dk.load(tmp_path / "b.zip")  # unpacked anew from the untouched archive
    assert again.run({"images": np.zeros((1, 1, 8, 8), np.float32)})["label"].shape == (1,)
