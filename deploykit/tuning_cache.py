"""The tuner's decisions on disk: where they live, what keys them, how they are read and written.

One JSON file per decision in ``<cache folder>/tune/``, named by a hash of its key (everything that
can change the decision, :func:`cache_key`). Writes are atomic (a temporary file, then
``os.replace``); a file that cannot be read or does not fit is ignored with a WARNING and rewritten
by the caller's fresh measurement, never fatal (``docs/tuning.md``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import backends as registry
from .artifacts import Artifacts
from .cachedir import ENV_CACHE_DIR, cache_dir
from .errors import BackendUnavailable
from .hardware import HardwareReport
from .plan import Candidate, Plan
from .version import __version__


class DecisionInputs(Protocol):
    """What of ``tuning.TuneSettings`` keys a decision: the inputs, the reference, the tolerances."""

    @property
    def inputs(self) -> Any: ...
    @property
    def shapes(self) -> Any: ...
    @property
    def dims(self) -> Any: ...
    @property
    def value_ranges(self) -> Any: ...
    @property
    def reference(self) -> Any: ...
    @property
    def rtol(self) -> float | None: ...
    @property
    def atol(self) -> float | None: ...

log = logging.getLogger("deploykit")

CACHE_SCHEMA = 1


def cache_key(arts: Artifacts, plan: Plan, hw: HardwareReport, s: DecisionInputs, threads: int | None,
              options: Mapping[str, Any], margin: float) -> dict[str, Any]:
    """Everything that can change the decision: the artifacts' bytes, the hardware, the versions of
    deploykit and of the runtimes involved, the candidates, and the options that change the result."""
    runtimes = {backend: _runtime_of(backend, hw) for backend in sorted({c.backend for c in plan.candidates})}
    if s.inputs is not None:
        feeds = s.inputs if isinstance(s.inputs, Mapping) else {"": s.inputs}
        inputs: Any = {"given": {k: _array_digest(v) for k, v in feeds.items()}}
    else:
        inputs = {"made_up": _jsonable({"shapes": s.shapes, "dims": s.dims, "value_ranges": s.value_ranges})}
    reference: Any = s.reference if not isinstance(s.reference, Mapping) else \
        {k: _array_digest(v) for k, v in s.reference.items()}
    return {"schema": CACHE_SCHEMA, "artifacts": [src.sha256() for src in arts.sources],
            "hardware": hw.fingerprint(), "deploykit": __version__, "runtimes": runtimes,
            "candidates": [_cand_json(arts, c) for c in plan.candidates], "requested": plan.requested,
            "threads": _jsonable(threads), "options": _jsonable(dict(options)), "inputs": inputs,
            "reference": reference, "rtol": _jsonable(s.rtol), "atol": _jsonable(s.atol),
            "margin": margin}


def _runtime_of(backend: str, hw: HardwareReport) -> str | None:
    """The distribution and version that runs ``backend`` (as the probe saw it; else the adapter's own
    word): a new runtime version is a new decision."""
    try:
        cls = registry.backend_class(backend)
    except BackendUnavailable:
        return None
    dist = hw.runtime_distribution(backend) if cls.distributions else None
    if dist is not None:
        return f"{dist} {hw.runtime_version(backend)}"
    try:
        return f"{backend} {cls.runtime_version()}"
    except BackendUnavailable:
        return None


def cache_path(key: Mapping[str, Any]) -> Path:
    """The file of the decision with this key."""
    return cache_dir() / "tune" / (hashlib.sha256(_dumps(key).encode()).hexdigest()[:32] + ".json")


def read(arts: Artifacts, plan: Plan, path: Path, key: dict[str, Any]) -> Plan | None:
    """The plan a readable, matching cache file holds; None (a WARNING if unreadable) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        log.warning("ignoring the tune cache file %s (%s); measuring again", path, e)
        return None
    try:
        entry = json.loads(text)
        if entry["key"] != key:
            return None  # another decision under a colliding name: measure, then overwrite
        viable = {c.key: c for c in plan.candidates}
        ranked = [viable[_cand_from(arts, d).key] for d in entry["ranked"]]
        ranked = [replace(c, measured_ms=float(d["measured_ms"])) for c, d in zip(ranked, entry["ranked"])]
        rejected = [replace(viable[_cand_from(arts, d).key], reason=str(d["reason"]))
                    for d in entry["rejected"]]
        notes = [str(n) for n in entry["notes"]]
        created = str(entry["created"])
        if not ranked:
            raise ValueError("no candidate ranked")
        if len({c.key for c in ranked}) != len(ranked):
            raise ValueError("a candidate ranked twice")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        log.warning("ignoring the unreadable tune cache file %s (%s: %s); measuring again and rewriting it",
                    path, type(e).__name__, e)
        return None
    cached = plan.reordered(ranked, rejected, decided_by="cache")
    cached.notes = [*notes, f"measured {created}, read from the cache {path}"]
    return cached


def store(path: Path, key: dict[str, Any], plan: Plan, rule: Plan, arts: Artifacts) -> None:
    """Write the decision atomically (a temporary file, then ``os.replace``); failure only warns."""
    viable = {c.key for c in rule.candidates}
    tuned = [c for c in plan.rejected if c.key in viable]  # the tuner's rejections, not the rule's
    entry = {"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model": arts.label,
             "ranked": [_cand_json(arts, c) | {"measured_ms": c.measured_ms} for c in plan.candidates],
             "rejected": [_cand_json(arts, c) | {"reason": c.reason} for c in tuned],
             "notes": [n for n in plan.notes if not n.startswith("decision cached in")]}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".tune-",
                                         suffix=".tmp", delete=False) as f:
            tmp = f.name
            json.dump(entry, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the tune cache file %s (%s); the decision is not cached", path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _cand_json(arts: Artifacts, c: Candidate) -> dict[str, Any]:
    return {"backend": c.backend, "device": c.device, "providers": list(c.providers),
            "artifact": arts.index_of(c)}


def _cand_from(arts: Artifacts, d: Mapping[str, Any]) -> Candidate:
    index = d["artifact"]
    if index is not None and not 0 <= int(index) < len(arts.labels):
        raise IndexError(f"artifact index {index} out of range")
    return Candidate(str(d["backend"]), str(d["device"]), tuple(str(p) for p in d["providers"]),
                     artifact=None if index is None else arts.labels[int(index)])


def _array_digest(value: Any) -> str:
    a = np.ascontiguousarray(np.asarray(value))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes() if a.dtype != np.dtype(object) else repr(a.tolist()).encode())
    return h.hexdigest()[:32]


def _jsonable(value: Any) -> Any:
    """Options as plain JSON (tuples as lists, arrays by digest, anything else by repr)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _array_digest(value)
    if isinstance(value, np.generic):  # numpy scalars: their Python value
        return _jsonable(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


__all__ = ["ENV_CACHE_DIR", "cache_dir", "cache_key", "cache_path", "read", "store"]
