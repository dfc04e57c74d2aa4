"""Bundle signatures through the OpenSSF model signing library (``model-signing`` on PyPI, extra
``deploykit[sign]``): an elliptic-curve key pair, offline — the signature is ``deploykit.sig`` inside
the bundle, a Sigstore bundle over every file's digest, so ``model_signing verify key BUNDLE
--signature BUNDLE/deploykit.sig --public_key KEY.pub`` checks a deploykit-signed bundle, and a
bundle that command signed verifies here."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, InvalidArgument, require
from .manifest import SIGNATURE

log = logging.getLogger("deploykit")


def _library() -> Any:
    return require("model_signing", "signing and verifying bundles needs the OpenSSF model signing "
                                    "library: pip install 'deploykit[sign]'")


def _key(path: Any, what: str) -> Path:  # str, Path or any os.PathLike
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise InvalidArgument(f"{what} must be the path of a PEM key file, got {path!r}")
    return Path(path)


def _hashing(library: Any, folder: Path) -> Any:
    return library.hashing.Config().set_ignored_paths(paths=[Path(SIGNATURE)])


def sign(folder: Path, key: str | os.PathLike[str], *, password: str | bytes | None = None) -> Path:
    """Sign every file of the bundle folder with the elliptic-curve private key at ``key``; returns
    the signature's path (``deploykit.sig`` in the bundle)."""
    library = _library()
    private = _key(key, "key")
    if password is not None and not isinstance(password, (str, bytes)):
        raise InvalidArgument(f"password must be text or bytes, got {type(password).__name__}")
    secret = password.encode() if isinstance(password, str) else password  # the library wants bytes
    signature = folder / SIGNATURE
    try:
        (library.signing.Config().use_elliptic_key_signer(private_key=private, password=secret)
         .set_hashing_config(_hashing(library, folder)).sign(folder, signature))
    except (ValueError, TypeError) as e:  # the library's own: a key that is not an EC private key...
        raise InvalidArgument(f"key {private}: cannot sign with it ({e})") from e
    log.info("signed %s (%s)", folder, signature.name)
    return signature


def verify(folder: Path, public_key: str | os.PathLike[str], label: str) -> None:
    """``IntegrityError`` unless ``deploykit.sig`` is a valid signature of the folder's files by the
    holder of ``public_key``'s private key."""
    library = _library()
    public = _key(public_key, "verify")
    signature = folder / SIGNATURE
    if not signature.is_file() or signature.is_symlink():
        raise IntegrityError(f"{label}: the bundle is not signed (no {SIGNATURE}) and verification was "
                             "asked for")
    try:
        (library.verifying.Config().use_elliptic_key_verifier(public_key=public)
         .set_hashing_config(_hashing(library, folder)).verify(folder, signature))
    except Exception as e:  # the library raises ValueError and others for every kind of mismatch
        first = str(e).splitlines()[0][:400] if str(e) else type(e).__name__
        raise IntegrityError(f"{label}: the signature does not verify with {public.name}: {first}") from e


__all__ = ["sign", "verify"]
