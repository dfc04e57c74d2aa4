"""Built TensorRT engines on disk, in deploykit's cache folder (beside the tuning decisions): keyed by
everything that changes the engine — the model's sha256 (its external data included), TensorRT's
version, the GPU's name and compute capability, the build options and the optimization profiles —
so a changed model, TensorRT upgrade, other GPU or option never reuses a stale engine, and the same
inputs always find their engine. A torn, changed or foreign file (its engine's length and sha256 are
in its header) is rebuilt with a warning, never deserialized blind."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ...cachedir import cache_dir

log = logging.getLogger("deploykit")

HEADER_BYTES = 4096  # the JSON header before the serialized engine (padded)
MAGIC = b"deploykit-trt\n"


def cache_key(model_sha256: str, trt_version: str, gpu_name: str, compute_capability: str | None,
              build: dict[str, Any], profiles: list[dict[str, Any]]) -> str:
    """Hex sha256 over every component (a change to any one changes the key)."""
    parts = {"model": model_sha256, "tensorrt": trt_version, "gpu": gpu_name,
             "compute_capability": compute_capability, "build": build, "profiles": profiles}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def engine_path(key: str) -> Path:
    return cache_dir() / "tensorrt" / f"{key}.engine"


def store(path: Path, key: str, plan: bytes, facts: dict[str, Any]) -> None:
    """Write ``MAGIC`` + a JSON header (key, the engine's length and sha256, facts) + the serialized
    engine, atomically (a unique temporary file, then a rename: concurrent writers never collide)."""
    body = {"key": key, "length": len(plan), "sha256": hashlib.sha256(plan).hexdigest()}
    header = json.dumps({**body, **facts}).encode()
    if len(header) > HEADER_BYTES - len(MAGIC):
        header = json.dumps(body).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(MAGIC + header.ljust(HEADER_BYTES - len(MAGIC)) + plan)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def load(path: Path, key: str) -> bytes | None:
    """The serialized engine cached under ``key``; None (a warning when the file is there but not
    ours, torn, or for another key) when it must be built."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("TensorRT engine cache %s unreadable (%s); building again", path, e)
        return None
    if not data.startswith(MAGIC) or len(data) <= HEADER_BYTES:
        log.warning("TensorRT engine cache %s is not a deploykit engine file (or is cut short); building "
                    "again", path)
        return None
    try:
        header = json.loads(data[len(MAGIC):HEADER_BYTES].decode().strip())
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("TensorRT engine cache %s has a corrupt header; building again", path)
        return None
    if not isinstance(header, dict) or header.get("key") != key:
        log.warning("TensorRT engine cache %s belongs to another build; building again", path)
        return None
    plan = data[HEADER_BYTES:]
    if header.get("length") != len(plan) or header.get("sha256") != hashlib.sha256(plan).hexdigest():
        log.warning("TensorRT engine cache %s is torn or changed (its engine does not match its header); "
                    "building again", path)
        return None
    return plan


__all__ = ["HEADER_BYTES", "MAGIC", "cache_key", "engine_path", "load", "store"]
