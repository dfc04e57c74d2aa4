"""The backend adapter contract: what a runtime must provide so that ``Engine`` can drive it.

An adapter is thin. ``Engine`` owns state, input validation and output assembly; an adapter only
loads the artifact, reports its specs, runs already-validated feeds and releases its resources.
It also *declares* what the rest of deploykit needs to know about it — the runtime's pip
distributions, the device it runs on, its place in the automatic order, the options it takes, the
candidates it offers a plan, the facts the probe reports — so that nothing outside the adapter
names it. To add a backend: subclass :class:`Backend` in ``backends/<name>.py`` (or a folder), then
add one line to ``backends/__init__.py``'s registry — or call ``deploykit.backends.register`` from
your own package. ``deploykit.conformance.check_backend(name)`` tests the contract.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..model import ModelSource
from ..plan import Candidate, Machine
from ..spec import TensorSpec

#: ``Backend.device_kind`` values.
CPU, NVIDIA_GPU = "cpu", "nvidia-gpu"


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
    #: The pip distributions that provide the runtime, in the order the probe reports them (the first
    #: installed one is "the" runtime). Empty: nothing beyond deploykit's own dependencies.
    distributions: ClassVar[tuple[str, ...]] = ()
    #: True when the distributions are builds of one import package (installing two: the last wins),
    #: so the probe notes a conflict when more than one is installed.
    distributions_conflict: ClassVar[bool] = False
    #: Other runtimes the adapter's plans depend on, name -> their pip distributions (e.g. the
    #: TensorRT that onnxruntime's TensorRT provider needs), so the probe reports them too.
    companion_distributions: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Where it runs: ``CPU`` or ``NVIDIA_GPU`` (a GPU backend's candidates are rejected without one).
    device_kind: ClassVar[str] = CPU
    #: Place in ``backend="auto"``'s order, lowest first (see ``docs/selection.md``); ties keep
    #: registry order.
    priority: ClassVar[int] = 50
    #: Keyword options ``__init__`` takes besides ``threads`` (the conformance suite checks the
    #: signature agrees); ``dk.load``'s unknown options are refused against this list.
    option_names: ClassVar[tuple[str, ...]] = ()

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

    def run_into_impl(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str],
                      out: Mapping[str, np.ndarray]) -> Sequence[np.ndarray] | None:
        """Like ``run_impl`` for ``output_names``, writing the outputs named in ``out`` into those
        preallocated arrays (checked: dtype, contiguity) and returning them in place. ``None``
        (the default): the runtime cannot, and the engine copies into them after ``run_impl``."""
        return None

    def info(self) -> dict[str, Any]:
        """Backend-specific facts worth showing (threads, providers, ...); plain data only."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """What the artifact says of itself beyond what ``ModelSource.metadata`` reads (e.g. a
        format whose metadata only the runtime parses); plain data. Default: none."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless the runtime holds resources
        """Release runtime resources. Called once by ``Engine.close``."""

    # -- what selection and the probe ask of a backend, before any model is loaded ---------------
    @classmethod
    def probe(cls) -> dict[str, Any]:
        """Facts about the installed runtime that plans need (e.g. onnxruntime's execution
        providers), plain data; called at most once per process, lazily, by the hardware report.
        May import the runtime. Default: none."""
        return {}

    @classmethod
    def describe_probe(cls, facts: Mapping[str, Any]) -> str:
        """One line for ``deploykit probe`` from :meth:`probe`'s facts ("" shows nothing)."""
        return ", ".join(f"{k} {v}" for k, v in facts.items() if v not in (None, "", [], ()))

    @classmethod
    def candidates(cls, source: ModelSource, machine: Machine,
                   options: Mapping[str, Any]) -> list[Candidate]:
        """The ways this backend could run ``source`` on ``machine``, best first, each viable or
        rejected with its ``reason``. Called only once the generic checks passed (format, options,
        runtime installed). Default: one candidate on the CPU, or on the first NVIDIA GPU for a
        GPU backend (rejected when there is none)."""
        if cls.device_kind == NVIDIA_GPU:
            if not machine.gpus:
                return [Candidate(cls.name, "cuda:0", reason=f"no NVIDIA GPU ({machine.gpu_probe})",
                                  rank=cls.priority)]
            return [Candidate(cls.name, machine.gpus[0].device, rank=cls.priority)]
        return [Candidate(cls.name, "cpu", rank=cls.priority)]

    @classmethod
    def named_candidate(cls, options: Mapping[str, Any]) -> Candidate:
        """The one candidate when the caller names this backend (its device as the options imply;
        the engine reports the real one once loaded)."""
        return Candidate(cls.name, "cuda:0" if cls.device_kind == NVIDIA_GPU else "cpu", rank=cls.priority)

    @classmethod
    def candidate_options(cls, candidate: Candidate) -> dict[str, Any]:
        """The options that make this backend run as ``candidate`` says (e.g. its providers)."""
        return {}

    @classmethod
    def strict_options(cls) -> dict[str, Any]:
        """Options that make the backend refuse its own internal fallbacks under ``strict=True``."""
        return {}
