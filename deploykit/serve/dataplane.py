"""The data plane: which models and versions are served, whether they are ready, and inference —
no HTTP here (the endpoints translate), no protocol inside the Engine.

Each served version is one Engine, loaded and warmed up (one inference on made-up inputs) before the
server reports ready. Inference runs off the event loop (``Engine.run_async``), so the loop only
parses and answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import DeployKitError
from ..loading import load
from ..synth import synthesize
from .repository import ModelEntry, Repository, scan
from .status import ModelNotReady, UnknownModel

log = logging.getLogger("deploykit.serve")


@dataclass
class ServedVersion:
    """One version of one model, loaded: its engine, and whether it takes traffic."""

    name: str
    version: int
    engine: Engine
    ready: bool = False


class DataPlane:
    """The models of one repository, loaded by ``load_all`` and looked up by name and version."""

    def __init__(self, repository: str | Path) -> None:
        self.repository: Repository = scan(repository)
        self._models: dict[str, dict[int, ServedVersion]] = {}
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load and warm up every served version of every model; a model that fails is kept out
        (and said so by ``failures``) while the others serve."""
        for name, entry in self.repository.models.items():
            for version in entry.served_versions():
                try:
                    served = self._load(entry, version)
                except DeployKitError as e:
                    self._failed[f"{name}/{version}"] = str(e)
                    log.error("model %s version %s failed to load: %s", name, version, e)
                    continue
                with self._lock:
                    self._models.setdefault(name, {})[version] = served

    def _load(self, entry: ModelEntry, version: int) -> ServedVersion:
        config = entry.config
        artifacts = [str(p) for p in entry.versions[version].artifacts]
        model: Any = artifacts[0] if len(artifacts) == 1 else artifacts
        engine = load(model, config.backend, threads=config.threads, **dict(config.options))
        try:
            made = synthesize(engine.inputs)
            engine.run(made.feeds)  # warm-up: the first call pays allocations and kernel choices
        except DeployKitError as e:  # a model whose inputs cannot be made up still serves
            log.warning("model %s version %s: warm-up skipped (%s)", entry.name, version, e)
        log.info("model %s version %s ready on %s (%s)", entry.name, version, engine.backend, engine.device)
        return ServedVersion(entry.name, version, engine, ready=True)

    def close(self) -> None:
        """Mark everything not ready and release every engine."""
        with self._lock:
            models, self._models = self._models, {}
        for versions in models.values():
            for served in versions.values():
                served.ready = False
                served.engine.close()

    # -- state ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True when every served version of every model is loaded and warm."""
        expected = sum(len(e.served_versions()) for e in self.repository.models.values())
        with self._lock:
            loaded = [s for versions in self._models.values() for s in versions.values()]
        return bool(expected) and len(loaded) == expected and all(s.ready for s in loaded)

    @property
    def failures(self) -> dict[str, str]:
        """``name/version`` -> why it failed to load."""
        return dict(self._failed)

    def names(self) -> list[str]:
        return sorted(self.repository.models)

    def versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._models.get(self._entry(name).name, {}))

    def _entry(self, name: str) -> ModelEntry:
        entry = self.repository.models.get(name)
        if entry is None:
            raise UnknownModel(f"unknown model {name!r}; this server serves: "
                               f"{', '.join(self.names()) or '(none)'}")
        return entry

    def get(self, name: str, version: str | int | None = None) -> ServedVersion:
        """The served version asked for (default: the newest served), ready; else ``UnknownModel``
        (404) or ``ModelNotReady`` (503)."""
        entry = self._entry(name)
        with self._lock:
            served = dict(self._models.get(name, {}))
        if version is None or version == "":
            if not served:
                why = "; ".join(f"{k}: {v}" for k, v in self._failed.items() if k.startswith(f"{name}/"))
                raise ModelNotReady(f"model {name!r} has no version ready" + (f" ({why})" if why else ""))
            return served[max(served)]
        number = _version_number(version)
        if number not in entry.versions:
            raise UnknownModel(f"model {name!r} has no version {version!r}; versions: "
                               f"{', '.join(map(str, sorted(entry.versions))) or '(none)'}")
        one = served.get(number)
        if one is None or not one.ready:
            raise ModelNotReady(f"model {name!r} version {number} is not served (served: "
                                f"{', '.join(map(str, sorted(served))) or 'none'})")
        return one

    # -- inference -----------------------------------------------------------------------------
    async def infer(self, name: str, version: str | int | None, feeds: Mapping[str, Any],
                    outputs: Sequence[str] | None = None) -> tuple[ServedVersion, dict[str, np.ndarray]]:
        """Run one request off the event loop; the version that served it comes back with it."""
        served = self.get(name, version)
        result = await served.engine.run_async(dict(feeds), list(outputs) if outputs else None)
        return served, result


def _version_number(version: str | int) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise UnknownModel(f"a model version is a positive integer, got {version!r}") from None
    if number < 1:
        raise UnknownModel(f"a model version is a positive integer, got {version!r}")
    return number


__all__ = ["DataPlane", "ServedVersion"]
