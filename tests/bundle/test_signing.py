"""Bundle signatures with the OpenSSF model signing library, checked both ways against the library's
own ``model_signing`` command: a bundle deploykit signed verifies there, one it signed verifies here;
an unsigned bundle, a wrong key, and a file changed after signing are refused."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH

pytest.importorskip("model_signing", reason="the sign extra (model-signing) is not installed")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization",
                                    reason="cryptography (model-signing's dependency) makes the test keys")
CLI = Path(sys.executable).parent / "model_signing"


def _keys(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))
    dk.pack(MODEL_PATH, tmp_path / "b", labels=[str(i) for i in range(10)], metadata={"name": "digits"})
    return tmp_path / "b"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    if not CLI.is_file():
        pytest.skip(f"the model_signing command is not at {CLI}")
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, check=False)


def test_deploykit_signs_and_the_library_command_verifies(bundle: Path, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "k")
    signature = dk.sign(bundle, private)
    assert signature == bundle / "deploykit.sig"
    assert dk.load(bundle, verify=public).bundle.verified_signature
    done = _cli("verify", "key", str(bundle), "--signature", str(signature), "--public_key", str(public))
    assert done.returncode == 0, done.stderr + done.stdout


def test_the_library_command_signs_and_deploykit_verifies(bundle: Path, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "k")
    done = _cli("sign", "key", str(bundle), "--signature", str(bundle / "deploykit.sig"),
                "--private_key", str(private))
    assert done.returncode == 0, done.stderr + done.stdout
    engine = dk.load(bundle, verify=public)
    assert engine.bundle.verified_signature and re.search(r"signature +verified", str(engine.bundle))


def test_unsigned_wrong_key_and_changed_after_signing_are_refused(bundle: Path, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "k")
    _, stranger = _keys(tmp_path, "other")
    with pytest.raises(dk.IntegrityError, match="not signed"):
        dk.load(bundle, verify=public)
    dk.sign(bundle, private)
    with pytest.raises(dk.IntegrityError, match=r"signature does not verify with other\.pub"):
        dk.load(bundle, verify=stranger)
    # a file changed *and* the manifest rewritten to match: the digests agree, the signature does not
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "labels.txt").write_text("zero\n" + "\n".join(str(i) for i in range(1, 10)) + "\n")
    import json

    from deploykit.bundle.integrity import sha256_of
    manifest = json.loads((copy / "deploykit.json").read_text())
    manifest["files"]["labels.txt"] = {"size": (copy / "labels.txt").stat().st_size,
                                       "sha256": sha256_of(copy / "labels.txt")}
    (copy / "deploykit.json").write_text(json.dumps(manifest))
    assert dk.load(copy).labels[0] == "zero"  # consistent, so it loads unverified...
    with pytest.raises(dk.IntegrityError, match="signature does not verify"):
        dk.load(copy, verify=public)  # ...but not as the key holder signed it


def test_a_signed_archive_carries_its_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))
    private, public = _keys(tmp_path, "k")
    dk.pack(MODEL_PATH, tmp_path / "b.zip", sign_key=private)
    assert dk.load(tmp_path / "b.zip", verify=public).bundle.verified_signature


@pytest.mark.parametrize("key, match", [("missing.pem", "key must be the path"),
                                        (None, "key must be the path")])
def test_bad_keys_are_refused(bundle: Path, key: object, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.sign(bundle, key)  # type: ignore[arg-type]


def test_a_public_key_is_not_a_signing_key(bundle: Path, tmp_path: Path) -> None:
    _, public = _keys(tmp_path, "k")
    with pytest.raises(dk.InvalidArgument, match="cannot sign with it"):
        dk.sign(bundle, public)


def test_an_encrypted_key_signs_with_its_password(bundle: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "enc.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    (tmp_path / "enc.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    dk.sign(bundle, tmp_path / "enc.pem", password="secret")
    assert dk.load(bundle, verify=tmp_path / "enc.pub").bundle.verified_signature
