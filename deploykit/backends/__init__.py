"""The one registry of backends: name -> ``"module:Class"``, imported only when that backend is asked for.

``import deploykit`` imports no runtime. Everything else about a backend — its formats, runtime
distributions, device, place in the automatic order, options, candidates — is declared on its
adapter class (``backends/base.py``), so a backend is one module (or folder) plus one line here.
Third parties add theirs without editing deploykit: ``register("name", "package.module:Class")`` at
run time (a plugin package calls it when imported). Installed entry points are not scanned: reading
them costs ``importlib.metadata`` (20-40 ms) on every probe, and a plugin that is imported is
explicit.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, NamedTuple

from ..errors import BackendUnavailable, InvalidArgument, UnknownBackend
from .base import CPU, NVIDIA_GPU, Backend

log = logging.getLogger("deploykit")

#: name -> "module:Class": the built-in backends. Add a backend here (or ``register`` it) and
#: nowhere else.
REGISTRY: dict[str, str] = {
    "onnxruntime": "deploykit.backends.onnxruntime:OnnxRuntimeBackend",
    "numpy": "deploykit.backends.reference:NumpyBackend",
    "tflite": "deploykit.backends.tflite:TFLiteBackend",
    "tensorrt": "deploykit.backends.tensorrt:TensorRTBackend",
}

#: Short names users may type -> registry name.
ALIASES: dict[str, str] = {"ort": "onnxruntime", "reference": "numpy", "litert": "tflite", "trt": "tensorrt"}

_lock = threading.Lock()


class Availability(NamedTuple):
    """Whether a backend can be used here; ``reason`` says why not, ``version`` what is installed."""

    available: bool
    reason: str
    version: str | None
    formats: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.available


def register(name: str, target: str, *, aliases: tuple[str, ...] = (), replace: bool = False) -> None:
    """Add a backend: ``target`` is ``"package.module:Class"``, a :class:`Backend` subclass whose
    ``name`` is ``name``. It is imported when first asked for; from then on it is probed, planned,
    loaded, tuned and benchmarked like the built-in ones. ``aliases`` are other names for it.
    ``replace=True`` overrides a registered name or alias (else that is an ``InvalidArgument``).
    Everything is checked before the registry changes."""
    key = _check_name(name, "name")
    module, sep, cls = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module or not cls:
        raise InvalidArgument(f"register({name!r}, target): target must be 'package.module:Class', "
                              f"got {target!r}")
    if isinstance(aliases, str) or not isinstance(aliases, (tuple, list)):
        raise InvalidArgument(f"aliases must be a tuple of names, got {type(aliases).__name__} {aliases!r}")
    keys = [_check_name(a, "aliases") for a in aliases]
    if not isinstance(replace, bool):
        raise InvalidArgument(f"replace must be True or False, got {replace!r}")
    with _lock:
        taken = [k for k in (key, *keys) if k in REGISTRY or k in ALIASES]
        if taken and not replace:
            where = ", ".join(f"{k!r} ({REGISTRY.get(k) or 'alias of ' + ALIASES[k]})" for k in taken)
            raise InvalidArgument(f"already registered: {where}; pass replace=True to override")
        REGISTRY[key] = target
        ALIASES.pop(key, None)
        for alias in keys:
            if alias != key:  # replace=True may take over a name: the alias is looked up first
                REGISTRY.pop(alias, None)
                ALIASES[alias] = key
    _class_cache.pop(key, None)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip() or name.lower() == "auto":
        raise InvalidArgument(f"backend {what}: each must be a non-empty string other than 'auto' (no "
                              f"surrounding spaces), got {name!r}")
    return name.lower()


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (and its aliases)."""
    key = canonical_name(name)
    with _lock:
        del REGISTRY[key]
        for alias in [a for a, n in ALIASES.items() if n == key]:
            del ALIASES[alias]
    _class_cache.pop(key, None)


def names() -> list[str]:
    """Every registered backend name, in registry order."""
    return list(REGISTRY)


def classes() -> list[type[Backend]]:
    """The adapter class of every registered backend that imports, in registry order (one that does
    not import is left out; ``available_backends`` says why)."""
    out = []
    for name in names():
        try:
            out.append(backend_class(name))
        except BackendUnavailable:
            continue
    return out


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case-insensitive, aliases resolved); ``UnknownBackend`` else."""
    if not isinstance(name, str):
        raise UnknownBackend(f"a backend name must be a string, got {type(name).__name__} {name!r}; "
                             f"known backends: {', '.join(sorted(names()))} (or 'auto')")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in REGISTRY:
        raise UnknownBackend(
            f"unknown backend {name!r}; known backends: {', '.join(sorted(REGISTRY))} (or 'auto')"
        )
    return key


_class_cache: dict[str, type[Backend]] = {}


def backend_class(name: str) -> type[Backend]:
    """The adapter class for ``name``; imports its module (not the runtime itself)."""
    key = canonical_name(name)
    cls = _class_cache.get(key)
    if cls is not None:
        return cls
    module_name, _, cls_name = REGISTRY[key].partition(":")
    try:
        found: Any = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(f"backend {key!r}: cannot import {REGISTRY[key]} ({type(e).__name__}: "
                                 f"{e})") from e
    if not (isinstance(found, type) and issubclass(found, Backend)) or found.name != key:
        raise BackendUnavailable(f"backend {key!r}: {REGISTRY[key]} is not a deploykit Backend subclass "
                                 f"named {key!r}")
    _class_cache[key] = found
    return found


def availability(name: str) -> Availability:
    cls = backend_class(name)
    try:
        version = cls.runtime_version()
    except BackendUnavailable as e:
        return Availability(False, str(e), None, cls.formats)
    return Availability(True, "", version, cls.formats)


def available_backends() -> dict[str, Availability]:
    """Every registered backend -> whether it is usable here, and if not, why not."""
    out: dict[str, Availability] = {}
    for name in names():
        try:
            out[name] = availability(name)
        except BackendUnavailable as e:  # a registered adapter that does not even import
            out[name] = Availability(False, str(e), None, ())
    return out


def auto_order() -> list[str]:
    """Registered backends in ``backend="auto"`` order: by ``priority``, ties in registry order.
    A registered adapter that does not import is left out (the plan says why)."""
    order: list[tuple[int, int, str]] = []
    for i, name in enumerate(names()):
        try:
            order.append((backend_class(name).priority, i, name))
        except BackendUnavailable:
            order.append((10**6, i, name))
    return [name for _, _, name in sorted(order)]


def auto_candidates(fmt: str) -> list[str]:
    """Registered backends that load ``fmt``, in ``auto_order()``."""
    out = []
    for name in auto_order():
        try:
            if fmt in backend_class(name).formats:
                out.append(name)
        except BackendUnavailable:
            continue
    return out


def __getattr__(name: str) -> Any:
    if name == "AUTO_ORDER":  # the former constant, now derived from each adapter's priority
        return tuple(auto_order())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "CPU",
    "NVIDIA_GPU",
    "REGISTRY",
    "Availability",
    "Backend",
    "auto_candidates",
    "auto_order",
    "availability",
    "available_backends",
    "backend_class",
    "canonical_name",
    "classes",
    "names",
    "register",
    "unregister",
]
