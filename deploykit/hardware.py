"""What this machine offers a model: CPU, memory, NVIDIA GPUs, runtimes — probed once per process.

``probe()`` reads files and package metadata only (no runtime is imported). Facts only a runtime
can tell (e.g. onnxruntime's execution providers, which need ``import onnxruntime``) come from each
backend's own ``probe()``, looked up the first time a plan asks for them
(``report.backend_facts(name)``), which a load on that backend pays anyway. The report names no
runtime itself: which pip distributions provide each runtime is declared by the backends.
The readers live in ``hostinfo`` (CPU, memory, cgroups) and ``gpus`` (NVML, nvidia-smi).
"""

from __future__ import annotations

import html
import json
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from . import backends as registry
from .errors import BackendUnavailable, InvalidArgument
from .hostinfo import (
    CpuInfo,
    MemoryInfo,
    cgroup_cpu_limit,
    cgroup_memory_limit,
    parse_cpuinfo,
    parse_meminfo,
    probe_cpu,
    probe_memory,
    usable_cpus,
)

if TYPE_CHECKING:
    from .gpus import GpuInfo

#: Distributions the probe reports that no backend declares: GPU access and deploykit's own.
OTHER_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "cuda": ("cuda-python", "pycuda"),
    "nvml": ("nvidia-ml-py",),
    "onnx": ("onnx",),
    "numpy": ("numpy",),
}


def runtime_distributions() -> dict[str, tuple[str, ...]]:
    """Runtime -> the pip distributions that provide it, in the order reported: every registered
    backend's ``distributions`` (and its companions', e.g. TensorRT for onnxruntime), then
    ``OTHER_DISTRIBUTIONS``."""
    table: dict[str, tuple[str, ...]] = {}
    for cls in registry.classes():
        if cls.distributions:
            table[cls.name] = cls.distributions
        for runtime, dists in cls.companion_distributions.items():
            table.setdefault(runtime, dists)
    for runtime, dists in OTHER_DISTRIBUTIONS.items():
        table.setdefault(runtime, dists)
    return table


# -- the report ---------------------------------------------------------------------------------
class PreprocessCore(NamedTuple):
    """Whether the C preprocessing core loaded, which SIMD path it took, or why it did not load."""

    loaded: bool
    simd: str | None
    error: str | None = None


class HardwareReport:
    """The probe's findings as one object; build one by hand to test a policy on other hardware.

    ``backend_facts`` maps a backend name to the facts its ``probe()`` would give (e.g.
    ``{"onnxruntime": {"providers": [...]}}``); a backend left out is asked on first access.
    ``onnxruntime_providers=`` is the former spelling of the onnxruntime entry (deprecated).
    """

    def __init__(self, *, cpu: CpuInfo, memory: MemoryInfo, gpus: Iterable[GpuInfo] = (),
                 gpu_probe: str = "", runtimes: Mapping[str, str] | None = None,
                 backend_facts: Mapping[str, Mapping[str, Any]] | None = None,
                 preprocess: PreprocessCore | None = None, system: str = "", python: str = "",
                 notes: Iterable[str] = (), probe_seconds: float = 0.0,
                 onnxruntime_providers: Iterable[str] | None = None) -> None:
        self.cpu = cpu
        self.memory = memory
        self.gpus: tuple[GpuInfo, ...] = tuple(gpus)
        self.gpu_probe = gpu_probe
        self.runtimes: dict[str, str] = dict(runtimes or {})
        self.preprocess = preprocess or PreprocessCore(False, None, "not probed")
        self.system = system
        self.python = python
        self.notes: list[str] = list(notes)
        self.probe_seconds = probe_seconds
        self._facts: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (backend_facts or {}).items()}
        if onnxruntime_providers is not None:
            warnings.warn("HardwareReport(onnxruntime_providers=...) is deprecated; pass "
                          "backend_facts={'onnxruntime': {'providers': [...]}}", DeprecationWarning,
                          stacklevel=2)
            self._facts["onnxruntime"] = {"providers": list(onnxruntime_providers), "error": None}
        self._facts_lock = threading.Lock()
        #: seconds spent in backends' own probes (e.g. importing onnxruntime for its providers)
        self.backend_probe_seconds = 0.0

    # -- runtimes ---------------------------------------------------------------------------
    def runtime_version(self, runtime: str) -> str | None:
        """Version of the first installed distribution providing ``runtime`` (a backend name, or a
        runtime of ``runtime_distributions()``)."""
        dist = self.runtime_distribution(runtime)
        return None if dist is None else self.runtimes[dist]

    def runtime_distribution(self, runtime: str) -> str | None:
        names = runtime_distributions().get(runtime, (runtime,))
        return next((d for d in names if d in self.runtimes), None)

    def backend_facts(self, backend: str) -> dict[str, Any]:
        """What backend ``backend`` says of its installed runtime (its ``probe()``), asked once; a
        backend whose runtime is not installed gives ``{"error": ...}`` without being imported."""
        with self._facts_lock:
            facts = self._facts.get(backend)
            if facts is None:
                start = time.perf_counter()
                facts = self._facts[backend] = _probe_backend(backend, self)
                self.backend_probe_seconds += time.perf_counter() - start
            return facts

    @property
    def providers_seconds(self) -> float:
        """Deprecated: ``backend_probe_seconds`` (every backend's own probe, not only providers)."""
        warnings.warn("HardwareReport.providers_seconds is deprecated; use backend_probe_seconds",
                      DeprecationWarning, stacklevel=2)
        return self.backend_probe_seconds

    @property
    def onnxruntime_providers(self) -> tuple[str, ...]:
        """Deprecated: ``backend_facts("onnxruntime")["providers"]``."""
        warnings.warn("HardwareReport.onnxruntime_providers is deprecated; use "
                      "report.backend_facts('onnxruntime')['providers']", DeprecationWarning, stacklevel=2)
        return tuple(self.backend_facts("onnxruntime").get("providers") or ())

    @property
    def onnxruntime_error(self) -> str | None:
        """Deprecated: ``backend_facts("onnxruntime")["error"]``."""
        warnings.warn("HardwareReport.onnxruntime_error is deprecated; use "
                      "report.backend_facts('onnxruntime')['error']", DeprecationWarning, stacklevel=2)
        return self.backend_facts("onnxruntime").get("error")

    # -- output -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of what decides speed here (CPU, ISA, usable cores, GPUs, driver)."""
        import hashlib

        key = {"system": self.system, "arch": self.cpu.arch, "cpu": self.cpu.model,
               "features": list(self.cpu.features), "usable": self.cpu.usable_cores,
               "gpus": [[g.name, g.memory_bytes, g.compute_capability, g.driver] for g in self.gpus]}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable data (resolves the onnxruntime providers)."""
        from dataclasses import asdict

        return {
            "system": self.system, "python": self.python,
            "cpu": self.cpu._asdict() | {"features": list(self.cpu.features)},
            "memory": self.memory._asdict() | {"usable_bytes": self.memory.usable_bytes},
            "gpus": [asdict(g) | {"device": g.device} for g in self.gpus],
            "gpu_probe": self.gpu_probe,
            "runtimes": dict(self.runtimes),
            **self._flat_facts(),
            "preprocess_core": self.preprocess._asdict(),
            "notes": list(self.notes),
            "fingerprint": self.fingerprint(),
            "probe_seconds": round(self.probe_seconds, 6),
            "backend_probe_seconds": round(self.backend_probe_seconds, 6),
        }

    def _flat_facts(self) -> dict[str, Any]:
        """Each installed backend's facts as ``<backend>_<fact>`` keys (e.g. ``onnxruntime_providers``)."""
        out: dict[str, Any] = {}
        for name in registry.names():
            for key, value in self.backend_facts(name).items():
                out[f"{name}_{key}"] = list(value) if isinstance(value, tuple) else value
        return out

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs, shared by the terminal and HTML views."""
        c, m = self.cpu, self.memory
        phys = "?" if c.physical_cores is None else str(c.physical_cores)
        quota = "" if c.cgroup_cpu_limit is None else f", cgroup quota {c.cgroup_cpu_limit:g}"
        limit = "none" if m.cgroup_limit_bytes is None else _gib(m.cgroup_limit_bytes)
        gpus = "; ".join(f"{g.device} {g.name}, {_gib(g.memory_bytes)}, sm {g.compute_capability or '?'}, "
                         f"driver {g.driver or '?'}" for g in self.gpus)
        core = self.preprocess
        rows = [
            ("platform", f"{self.system} {c.arch}, Python {self.python}"),
            ("cpu", f"{c.model}: {c.logical_cores} logical, {phys} physical, {c.usable_cores} usable{quota}"),
            ("isa", " ".join(c.features) or "(none of the tracked extensions)"),
            ("memory", f"{_gib(m.total_bytes)} total, {_gib(m.available_bytes)} available, "
                       f"cgroup limit {limit}"),
            ("gpus", f"{gpus} (via {self.gpu_probe})" if gpus else f"none ({self.gpu_probe})"),
            ("runtimes", ", ".join(f"{k} {v}" for k, v in self.runtimes.items()) or "none"),
            *self._fact_rows(),
            ("preprocess", f"C core loaded, SIMD path {core.simd}" if core.loaded
             else f"C core not loaded ({core.error})"),
            ("fingerprint", self.fingerprint()),
            ("probe", f"{self.probe_seconds * 1e3:.1f} ms (+ {self.backend_probe_seconds * 1e3:.1f} ms "
                      "for the backends' own probes)"),
        ]
        rows += [("note", n) for n in self.notes]
        return rows

    def _fact_rows(self) -> list[tuple[str, str]]:
        rows = []
        for name in registry.names():
            facts = self.backend_facts(name)
            if not facts or (set(facts) == {"error"}):
                continue
            try:
                text = registry.backend_class(name).describe_probe(facts)
            except BackendUnavailable:
                continue
            if text:
                rows.append((name, text))
        return rows

    def format(self) -> str:
        return "\n".join(f"{k:<14}{v}" for k, v in self.rows())

    __str__ = format

    def __repr__(self) -> str:
        return (f"<HardwareReport {self.cpu.model} x{self.cpu.usable_cores}, "
                f"{len(self.gpus)} GPU(s), runtimes: {', '.join(self.runtimes) or 'none'}>")

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in self.rows())
        return f"<div><b>deploykit.HardwareReport</b><table>{body}</table></div>"


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


# -- probing ------------------------------------------------------------------------------------
_lock = threading.Lock()
_cached: HardwareReport | None = None


def probe(*, refresh: bool = False) -> HardwareReport:
    """This machine's report, probed on first call and cached for the process (``refresh=True`` redoes it)."""
    global _cached
    if not isinstance(refresh, bool):
        raise InvalidArgument(f"refresh must be True or False, got {refresh!r}")
    with _lock:
        if _cached is None or refresh:
            _cached = _probe()
        return _cached


def _probe() -> HardwareReport:
    start = time.perf_counter()
    notes: list[str] = []
    runtimes = installed_runtimes()
    notes += _conflicting_builds(runtimes)
    from .gpus import probe_nvidia_gpus  # imported on first probe: ``import deploykit`` stays light

    gpus, how = probe_nvidia_gpus()
    return HardwareReport(
        cpu=probe_cpu(), memory=probe_memory(), gpus=gpus, gpu_probe=how, runtimes=runtimes,
        preprocess=_probe_preprocess(), system=platform.system(), python=platform.python_version(),
        notes=notes, probe_seconds=time.perf_counter() - start,
    )


def _conflicting_builds(runtimes: Mapping[str, str]) -> list[str]:
    """A note per backend whose distributions are builds of one package (``distributions_conflict``)
    of which more than one is installed."""
    notes = []
    for cls in registry.classes():
        several = [d for d in cls.distributions if d in runtimes]
        if cls.distributions_conflict and len(several) > 1:
            notes.append(f"several {cls.name} distributions are installed ({', '.join(several)}); they "
                         "share one package folder, so the last one installed wins — keep only one")
    return notes


def installed_runtimes(paths: Iterable[str] | None = None) -> dict[str, str]:
    """Distribution -> version for each distribution in RUNTIME_DISTRIBUTIONS installed on ``sys.path``.

    Read from the ``NAME-VERSION.dist-info`` (or ``.egg-info``) folder names, first on the path wins,
    as ``importlib.metadata`` finds them — without importing it (20-40 ms here) or any runtime.
    """
    wanted = {_normalize(d): d for dists in runtime_distributions().values() for d in dists}
    found: dict[str, str] = {}
    for entry in sys.path if paths is None else paths:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # not a folder (a zip, a missing path)
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if suffix not in ("dist-info", "egg-info") or not dot:
                continue
            dist, _, version = stem.partition("-")
            dist = wanted.get(_normalize(dist), "")
            if dist and dist not in found and version:
                found[dist] = version.split("-py", 1)[0] if suffix == "egg-info" else version
    order = list(wanted.values())
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[0])))


def _normalize(name: str) -> str:
    """PEP 503 name normalisation: ``Tflite_Runtime`` and ``tflite-runtime`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _probe_backend(name: str, report: HardwareReport) -> dict[str, Any]:
    """A backend's own facts; without importing it when its runtime is not installed."""
    try:
        cls = registry.backend_class(name)
    except BackendUnavailable as e:
        return {"error": str(e)}
    own_probe = getattr(cls.probe, "__func__", None) is not getattr(registry.Backend.probe, "__func__", None)
    if not own_probe:
        return {}
    if cls.distributions and report.runtime_distribution(name) is None:
        return {"error": f"{name} is not installed"}
    try:
        return dict(cls.probe())
    except Exception as e:  # a third-party probe must not break the report
        return {"error": f"{name}'s probe failed: {type(e).__name__}: {e}"}


def __getattr__(name: str) -> Any:
    if name == "RUNTIME_DISTRIBUTIONS":  # the former constant, now declared by the backends
        return runtime_distributions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _probe_preprocess() -> PreprocessCore:
    from .preprocess import native  # the core is imported here only, when the probe runs

    loaded, simd, error = native.status()
    return PreprocessCore(loaded, simd, error)


__all__ = [
    "OTHER_DISTRIBUTIONS",
    "CpuInfo",
    "HardwareReport",
    "MemoryInfo",
    "PreprocessCore",
    "cgroup_cpu_limit",
    "cgroup_memory_limit",
    "installed_runtimes",
    "parse_cpuinfo",
    "parse_meminfo",
    "probe",
    "runtime_distributions",
    "usable_cpus",
]
