"""The backend adapter contract: what a runtime must provide so that ``Engine`` can drive it.

An adapter is thin. ``Engine`` owns state, input validation and output assembly; an adapter only
loads the artifact, reports its specs, runs already-validated feeds and releases its resources.
To add a backend: subclass :class:`Backend` in ``backends/<name>.py``, then add one line to
``backends/__init__.py``'s registry.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..model import ModelSource
from ..spec import TensorSpec


class Backend(abc.ABC):
    """One loaded model on one runtime."""

    #: Registry name, e.g. ``"onnxruntime"``.
    name: ClassVar[str]
    #: Artifact formats this backend loads, e.g. ``("onnx",)``.
    formats: ClassVar[tuple[str, ...]]
    #: Pip extra that installs the runtime, used in error messages.
    extra: ClassVar[str]
    #: True when ``run_impl`` may be called from several threads at once without a lock.
    thread_safe: ClassVar[bool] = True

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: Where it runs, e.g. ``"cpu"`` or ``"cuda:0"``.
    device: str = "cpu"
    #: Set when the runtime could not honour the request and something else runs instead.
    fallback: str | None = None

    @classmethod
    @abc.abstractmethod
    def runtime_version(cls) -> str:
        """Import the runtime and return its version; raise ``BackendUnavailable`` if it is absent."""

    @abc.abstractmethod
    def __init__(self, source: ModelSource, *, threads: int | None = None, **options: Any) -> None:
        """Load ``source``; raise ``ModelLoadError`` if the runtime rejects it."""

    @abc.abstractmethod
    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> Sequence[np.ndarray]:
        """Run on validated feeds (right names, dtypes, ranks, contiguous) and return the outputs
        named, in that order; ``None`` means every output in model order."""

    def info(self) -> dict[str, Any]:
        """Backend-specific facts worth showing (threads, providers, ...); plain data only."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless the runtime holds resources
        """Release runtime resources. Called once by ``Engine.close``."""
