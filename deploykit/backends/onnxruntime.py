"""ONNX Runtime adapter: an ``InferenceSession`` behind the Engine contract.

Everything deploykit knows about onnxruntime lives here: its pip distributions, its execution
providers (probed once), the provider tiers a plan offers (TensorRT+CUDA+CPU, CUDA+CPU, CPU), and
how a provider list is read. Threads default to the CPUs this process may use (affinity + cgroup
quota).

Providers: ``providers="CUDA"`` or a list, full ORT names or short ones, case-insensitive. A list
that ends in ``CPUExecutionProvider`` is ORT's own idiom for "these, else the CPU": providers this
build lacks are dropped and the engine records the fallback (``engine.fallback``, a warning) —
refused under ``strict=True``. A list without CPU means exactly those providers: a missing one is an
error. ``allow_fallback=True/False`` overrides either reading.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..arguments import check_bool, check_threads
from ..errors import BackendUnavailable, InputMismatch, InvalidArgument, ModelLoadError, first_line
from ..hostinfo import usable_cpus
from ..model import ModelSource, onnx_io_specs
from ..plan import Candidate, Machine
from .base import Backend

log = logging.getLogger("deploykit.backends.onnxruntime")

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
#: Preferred order when the user names no provider (CPU always last, as the floor).
_DEFAULT_PREFERENCE = (CUDA, CPU)
_GPU_PROVIDERS = {CUDA: "cuda", TRT: "cuda", "ROCMExecutionProvider": "rocm",
                  "MIGraphXExecutionProvider": "rocm", "DmlExecutionProvider": "dml",
                  "CoreMLExecutionProvider": "coreml", "OpenVINOExecutionProvider": "openvino"}
#: The plan's tiers, best first: (providers, needs an NVIDIA GPU, rank in the policy).
TIERS: tuple[tuple[tuple[str, ...], bool, int], ...] = (
    ((TRT, CUDA, CPU), True, 20),
    ((CUDA, CPU), True, 30),
    ((CPU,), False, 40),
)
#: The pip distributions of TensorRT, which the TensorRT provider needs at run time.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            f"onnxruntime is not installed ({e}); install it with: pip install 'deploykit[onnxruntime]'"
        ) from e
    return onnxruntime


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnxruntime"
    thread_safe = True  # InferenceSession.run is documented as thread-safe
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-silicon")
    distributions_conflict = True  # every build installs the `onnxruntime` package
    companion_distributions: ClassVar[dict[str, tuple[str, ...]]] = {"tensorrt": TENSORRT_DISTRIBUTIONS}
    priority = 40
    option_names = ("providers", "allow_fallback", "graph_optimization_level", "session_options",
                    "allow_spinning")

    @classmethod
    def runtime_version(cls) -> str:
        return str(_ort().__version__)

    def __init__(
        self,
        source: ModelSource,
        *,
        threads: int | None = None,
        providers: str | Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        allow_fallback: bool | None = None,
        graph_optimization_level: str | int | None = None,
        session_options: Any = None,
        allow_spinning: bool | None = None,
    ) -> None:
        ort = _ort()
        self._version = ort.__version__
        self.inputs, self.outputs = onnx_io_specs(source.proto)
        so = self._session_options(ort, session_options, graph_optimization_level)
        if allow_spinning is not None:
            _allow_spinning(so, check_bool(allow_spinning, "allow_spinning"))
        self.threads = _set_threads(so, threads)
        explicit = providers is not None
        wanted, requested, usable, allow_fallback = self._providers(ort, providers, allow_fallback)

        model: Any = str(source.path) if source.path is not None else source.read_bytes()
        try:
            self._session = ort.InferenceSession(model, sess_options=so, providers=usable)
        except Exception as e:  # ORT raises its own pybind exception types
            raise ModelLoadError(
                f"{source.label}: onnxruntime {self._version} cannot load it: {first_line(e)}"
            ) from e

        self.providers: list[str] = list(self._session.get_providers())
        #: whether the intra-op pool spin-waits between runs (ORT's default: yes)
        self.spinning = _spinning_allowed(self._session.get_session_options())
        dropped = [p for p in requested if p not in self.providers]
        if dropped:
            why = f"requested providers {dropped} are not active (active: {self.providers})"
            if not allow_fallback:
                self._session = None
                raise BackendUnavailable(f"onnxruntime: {why}; pass allow_fallback=True to accept "
                                         "the fallback")
            if explicit:  # the caller asked for them: say so where they look
                self.fallback = why
                log.warning("onnxruntime fallback for %s: %s", source.label, why)
        self.device = _device_of(self.providers[0], wanted)
        self.requested_providers = requested

    def _providers(self, ort: Any, providers: Any, allow_fallback: bool | None) -> tuple[
            list[str | tuple[str, dict[str, Any]]], list[str], list[Any], bool]:
        """(providers as given, their names, those this build has, whether falling back is allowed);
        a missing provider without the fallback is a ``BackendUnavailable``."""
        available = list(ort.get_available_providers())
        explicit = providers is not None
        wanted: list[str | tuple[str, dict[str, Any]]] = normalize_providers(providers, ort) if explicit \
            else [p for p in _DEFAULT_PREFERENCE if p in available]
        requested = [p if isinstance(p, str) else p[0] for p in wanted]
        if allow_fallback is None:  # ORT's idiom: a list ending in CPU means "these, else the CPU"
            allow_fallback = not explicit or requested[-1] == CPU
        else:
            allow_fallback = check_bool(allow_fallback, "allow_fallback")
        missing = [p for p in requested if p not in available]
        if missing and not allow_fallback:
            raise BackendUnavailable(
                f"onnxruntime {self._version} has no {', '.join(missing)} here; available "
                f"providers: {', '.join(available)}. Install the matching onnxruntime build, or "
                "end the list with CPUExecutionProvider (or pass allow_fallback=True) to run on "
                "what is available"
            )
        usable = [p for p in wanted if (p if isinstance(p, str) else p[0]) in available] or [CPU]
        return wanted, requested, usable, allow_fallback

    @staticmethod
    def _session_options(ort: Any, given: Any, level: str | int | None) -> Any:
        if isinstance(given, ort.SessionOptions):
            so = given
        elif given is None or isinstance(given, Mapping):
            so = ort.SessionOptions()
            # ORT logs to stderr on its own; its errors reach the user as exceptions anyway
            so.log_severity_level = 4
            for key, value in dict(given or {}).items():
                if isinstance(key, str) and "." in key:  # a session config entry, as ORT names them
                    _config_entry(so, key, value)
                    continue
                if not isinstance(key, str) or not hasattr(so, key):
                    raise InvalidArgument(f"session_options: onnxruntime.SessionOptions has no attribute "
                                          f"{key!r} (session config entries are dotted keys, e.g. "
                                          f"'session.intra_op.allow_spinning')")
                try:
                    setattr(so, key, value)
                except TypeError as e:
                    raise InvalidArgument(f"session_options[{key!r}]: {first_line(e)}") from e
        else:
            raise InvalidArgument(f"session_options must be an onnxruntime.SessionOptions or a dict of its "
                                  f"attributes, got {type(given).__name__}")
        if level is not None:
            if isinstance(level, str):
                if level.lower() not in _OPT_LEVELS:
                    raise InvalidArgument(f"graph_optimization_level {level!r} is not one of "
                                          f"{', '.join(_OPT_LEVELS)}")
                level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level.lower()])
            elif isinstance(level, bool) or not isinstance(level, (int, ort.GraphOptimizationLevel)) or \
                    (isinstance(level, int) and level not in {int(v) for v in
                                                              ort.GraphOptimizationLevel.__members__.values()}):
                raise InvalidArgument(f"graph_optimization_level must be one of {', '.join(_OPT_LEVELS)} "
                                      f"(or onnxruntime's enum), got {level!r}")
            try:
                so.graph_optimization_level = level if not isinstance(level, int) \
                    else ort.GraphOptimizationLevel(level)
            except ValueError as e:
                raise InvalidArgument(f"graph_optimization_level {level!r}: {first_line(e)}") from e
        return so

    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> Sequence[np.ndarray]:
        result: Sequence[np.ndarray] = self._session.run(output_names, feeds)
        return result

    def run_into_impl(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str],
                      out: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """IO binding: the inputs read in place, the outputs in ``out`` written straight into their
        buffers (no copy on the CPU), the others allocated by onnxruntime."""
        io = self._session.io_binding()
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        for name in output_names:
            given = out.get(name)
            if given is None:
                io.bind_output(name, "cpu")
            else:
                io.bind_output(name, "cpu", 0, given.dtype.type, list(given.shape), given.ctypes.data)
        try:
            self._session.run_with_iobinding(io)
        except Exception as e:  # a buffer whose shape is not the output's
            if out and "shape" in str(e).lower():
                raise InputMismatch(f"out: onnxruntime refused a buffer: {first_line(e)}") from e
            raise
        values = io.get_outputs()
        return [out[n] if n in out else values[i].numpy() for i, n in enumerate(output_names)]

    def info(self) -> dict[str, Any]:
        return {
            "version": self._version,
            "providers": list(self.providers),
            "threads": self.threads,
            "spinning": self.spinning,
        }

    def close(self) -> None:
        self._session = None

    # -- what plans and the probe need ---------------------------------------------------------
    @classmethod
    def probe(cls) -> dict[str, Any]:
        """This build's execution providers (importing onnxruntime), or why there are none."""
        try:
            import onnxruntime
        except Exception as e:  # ImportError, or a broken build failing while it loads
            return {"providers": [], "error": f"onnxruntime does not import: {type(e).__name__}: {e}"}
        return {"providers": list(onnxruntime.get_available_providers()), "error": None}

    @classmethod
    def describe_probe(cls, facts: Mapping[str, Any]) -> str:
        return "providers " + (", ".join(facts.get("providers") or ()) or f"none ({facts.get('error')})")

    @classmethod
    def candidates(cls, source: ModelSource, machine: Machine,
                   options: Mapping[str, Any]) -> list[Candidate]:
        """The provider tiers, each viable or rejected with its reason; given providers replace them."""
        if options.get("providers") is not None:
            return [cls.named_candidate(options)]
        facts = machine.backend_facts(cls.name)
        if facts.get("error"):
            return [Candidate(cls.name, reason=str(facts["error"]), rank=cls.priority)]
        have = tuple(facts.get("providers") or ())
        build = f"onnxruntime {machine.runtime_version(cls.name)} ({machine.runtime_distribution(cls.name)})"
        gpu = machine.gpus[0].device if machine.gpus else "cuda:0"
        out = []
        for providers, needs_gpu, rank in TIERS:
            missing = [p for p in providers if p not in have]
            reason = None
            if needs_gpu and not machine.gpus:
                reason = f"no NVIDIA GPU ({machine.gpu_probe})"
            elif missing:
                reason = (f"{build} has no {', '.join(missing)} (it has {', '.join(have) or 'none'})"
                          + ("; install onnxruntime-gpu" if CUDA in missing else ""))
            elif TRT in providers:
                reason = _trt_reason(source, machine)
            out.append(Candidate(cls.name, gpu if needs_gpu else "cpu", providers, reason=reason, rank=rank))
        return out

    @classmethod
    def named_candidate(cls, options: Mapping[str, Any]) -> Candidate:
        """The caller's providers (checked and spelled as ORT does) replace the tiers."""
        if options.get("providers") is None:
            return super().named_candidate(options)
        given = normalize_providers(options["providers"], _ort())
        names = tuple(p if isinstance(p, str) else p[0] for p in given)
        return Candidate(cls.name, _device_of(names[0], given), names, rank=_rank(names))

    @classmethod
    def candidate_options(cls, candidate: Candidate) -> dict[str, Any]:
        """A tier runs with exactly its providers: one that fails to start fails the candidate, and
        the plan moves on to the next tier (ORT would silently drop it)."""
        if not candidate.providers:
            return {}
        return {"providers": list(candidate.providers), "allow_fallback": False}

    @classmethod
    def strict_options(cls) -> dict[str, Any]:
        return {"allow_fallback": False}


#: The session config entries that let ORT's thread pools spin-wait between parallel sections.
SPINNING_ENTRIES = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _spinning_allowed(so: Any) -> bool:
    try:
        return bool(so.get_session_config_entry(SPINNING_ENTRIES[0]) != "0")
    except Exception:  # not set: ORT's default spins
        return True


def _allow_spinning(so: Any, allow: bool) -> None:
    """Set both pools' spinning, except where the caller's session options already say."""
    for key in SPINNING_ENTRIES:
        try:
            so.get_session_config_entry(key)
        except Exception:  # not set: ORT raises for an absent key
            _config_entry(so, key, allow)


def _config_entry(so: Any, key: str, value: Any) -> None:
    """``SessionOptions.add_session_config_entry(key, value)``: booleans as ``"1"``/``"0"``, numbers and
    strings as text, as ORT's documented entries (``session.intra_op.allow_spinning``...) take them."""
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise InvalidArgument(f"session_options[{key!r}]: a session config entry is a string, number or "
                              f"bool, got {type(value).__name__}")
    try:
        so.add_session_config_entry(key, text)
    except Exception as e:  # ORT's own (Fail / RuntimeError) for an entry it refuses
        raise InvalidArgument(f"session_options[{key!r}]: {first_line(e)}") from e


def _set_threads(so: Any, threads: int | None) -> int:
    """An explicit thread count wins; else what a given SessionOptions set (bounded as ``threads=``
    is); else the CPUs this process may use. Inter-op threads default to 1."""
    for attr in ("intra_op_num_threads", "inter_op_num_threads"):
        if getattr(so, attr):  # 0: onnxruntime's default
            check_threads(getattr(so, attr), f"session_options {attr}", warn_above_usable=False)
    if threads is not None:
        so.intra_op_num_threads = threads
    elif so.intra_op_num_threads == 0:
        so.intra_op_num_threads = usable_cpus()
    if so.inter_op_num_threads == 0:
        so.inter_op_num_threads = 1
    return int(so.intra_op_num_threads)


def normalize_providers(providers: Any, ort: Any | None = None) -> list[str | tuple[str, dict[str, Any]]]:
    """``providers`` as ORT takes them: one name or a list; each a name (``"CUDA"`` or
    ``"CUDAExecutionProvider"``, any case) or ``(name, {options})``; unknown names refused."""
    items = _as_list(providers)
    if not items:
        raise InvalidArgument("providers must name at least one execution provider (or be None for "
                              "onnxruntime's best available)")
    known = list(ort.get_all_providers()) if ort is not None else []
    by_key = {p.lower(): p for p in known} | {p.removesuffix("ExecutionProvider").lower(): p for p in known}
    out: list[str | tuple[str, dict[str, Any]]] = []
    for item in items:
        name, opts = (item, None) if isinstance(item, str) else _provider_pair(item)
        full = by_key.get(name.lower()) or by_key.get(name.lower().removesuffix("executionprovider"))
        if full is None and known:
            raise InvalidArgument(f"providers: unknown execution provider {name!r}; onnxruntime knows "
                                  f"{', '.join(known)}")
        full = full or name
        out.append(full if opts is None else (full, opts))
    return out


def _as_list(providers: Any) -> list[Any]:
    if isinstance(providers, (str, tuple)) and (isinstance(providers, str) or _is_pair(providers)):
        return [providers]  # one provider, not its letters
    if isinstance(providers, Sequence):
        return list(providers)
    raise InvalidArgument(f"providers must be a provider name or a list of them, got "
                          f"{type(providers).__name__} {providers!r}")


def _is_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and \
        isinstance(item[1], Mapping)


def _provider_pair(item: Any) -> tuple[str, dict[str, Any]]:
    if not _is_pair(item):
        raise InvalidArgument(f"providers: each entry must be a name or (name, {{options}}), got {item!r}")
    return item[0], dict(item[1])


def _rank(providers: Sequence[str]) -> int:
    for tier, _, rank in TIERS:
        if providers and providers[0] == tier[0]:
            return rank
    return 40


def _trt_reason(source: ModelSource, machine: Machine) -> str | None:
    if machine.runtime_version("tensorrt") is None:
        return ("TensorRT is not installed (pip install tensorrt), so the provider cannot start; "
                "a system-wide TensorRT is not detected: pass providers=[...] to use it")
    inputs, _ = onnx_io_specs(source.proto)
    dynamic = [str(s) for s in inputs if not s.is_static]
    if dynamic:
        return (f"dynamic input shapes ({', '.join(dynamic)}): TensorRT builds an engine per new shape; "
                "pass providers=[...] to use it anyway")
    return None


def _device_of(provider: str, providers: Sequence[Any]) -> str:
    kind = _GPU_PROVIDERS.get(provider)
    if kind is None:
        return "cpu"
    for p in providers:
        if not isinstance(p, str) and p[0] == provider:
            return f"{kind}:{int(p[1].get('device_id', 0))}"
    return f"{kind}:0"


__all__ = ["TIERS", "OnnxRuntimeBackend", "normalize_providers"]
