"""Selection by rule: the backends that could run a model here, best first, and why the others cannot.

The policy (``docs/selection.md``), for one model artifact and one
:class:`~deploykit.hardware.HardwareReport`: every registered backend, in ``backends.auto_order()``
(each adapter's ``priority``), is checked generically — does it load the format, take the options
given, is its runtime installed — and then asked for its own candidates (``Backend.candidates``:
onnxruntime offers its provider tiers, a GPU backend is rejected without a GPU). Each candidate
carries its policy ``rank``; a candidate that cannot run here is kept in ``Plan.rejected`` with the
reason. ``Plan.reordered`` lets a tuner replace the rule's order by measured timings without redoing
the checks. No backend is named in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import backends as registry
from . import settings
from .backends.base import NVIDIA_GPU
from .errors import BackendUnavailable, ModelLoadError, UnknownBackend, UnknownOption
from .hardware import HardwareReport, probe
from .model import ModelSource
from .plan import Candidate, Plan

#: Environment variable that replaces ``backend="auto"`` with a backend name, for operators.
ENV_BACKEND = "DEPLOYKIT_BACKEND"


def check_backend_name(backend: Any) -> str:
    """``backend`` as given (``"auto"`` or a registered name, any case); ``UnknownBackend`` else."""
    if isinstance(backend, str) and backend.lower() == "auto":
        return "auto"
    return registry.canonical_name(backend)


def with_operator_override(backend: str, make: Callable[[str, str | None], Plan]) -> Plan:
    """``make(requested, decided_by)`` for ``backend``, except that the operator's ``DEPLOYKIT_BACKEND``
    replaces ``"auto"`` (then ``decided_by`` is the variable's name, and an unknown name in it is
    an ``UnknownBackend`` that names the variable)."""
    env = settings.get(ENV_BACKEND)
    if backend.lower() != "auto" or not env or env.lower() == "auto":
        return make(backend, None)
    try:
        return make(env, ENV_BACKEND)
    except UnknownBackend as e:
        raise UnknownBackend(f"{ENV_BACKEND}={env!r}: {e}") from e


def make_plan(source: ModelSource, hardware: HardwareReport | None = None, *, backend: str = "auto",
              options: Mapping[str, Any] | None = None, strict: bool = False,
              decided_by: str | None = None) -> Plan:
    """The plan for ``source``: by the policy for ``backend="auto"`` (on ``hardware``, default: this
    machine's probe), else the one backend named. ``options`` are the backend options the caller
    passes to ``load``; candidates whose adapter does not take them are rejected."""
    options = dict(options or {})
    if check_backend_name(backend) != "auto":
        return _named_plan(source, registry.canonical_name(backend), options, strict, decided_by)
    hw = hardware if hardware is not None else probe()
    viable: list[Candidate] = []
    rejected: list[Candidate] = []
    for cand in _policy_candidates(source, hw, options):
        (rejected if cand.reason else viable).append(cand)
    viable.sort(key=policy_rank)  # stable: ties keep the registry's order
    return Plan(source.label, source.format, viable, rejected, requested="auto",
                decided_by=decided_by or "rule", strict=strict, hardware=hw.fingerprint())


def _named_plan(source: ModelSource, name: str, options: dict[str, Any], strict: bool,
                decided_by: str | None) -> Plan:
    """The one-candidate plan of a backend named by the caller (or the operator)."""
    cls = registry.backend_class(name)
    if source.format not in cls.formats:
        raise ModelLoadError(f"{source.label}: backend {name!r} loads {'/'.join(cls.formats)} models, "
                             f"not {source.format}")
    check_options(cls, options)
    only = cls.named_candidate(options)
    return Plan(source.label, source.format, [only], requested=name, decided_by=decided_by or "caller",
                strict=strict)


def _policy_candidates(source: ModelSource, hw: HardwareReport,
                       options: dict[str, Any]) -> list[Candidate]:
    out: list[Candidate] = []
    for name in registry.auto_order():
        reason = backend_reason(name, source, hw, options)
        if reason is not None:
            out.append(Candidate(name, _device_kind_of(name), reason=reason, rank=_priority(name)))
            continue
        out += registry.backend_class(name).candidates(source, hw, options)
    return out


def _device_kind_of(name: str) -> str:
    """Where a rejected backend would have run: the first GPU for a GPU backend, else the CPU."""
    try:
        return "cuda:0" if registry.backend_class(name).device_kind == NVIDIA_GPU else "cpu"
    except BackendUnavailable:
        return "cpu"


def backend_reason(name: str, source: ModelSource, hw: HardwareReport,
                   options: Mapping[str, Any]) -> str | None:
    """Why backend ``name`` as a whole cannot run ``source`` here (format, options, runtime), or None."""
    try:
        cls = registry.backend_class(name)
    except BackendUnavailable as e:
        return str(e)
    if source.format not in cls.formats:
        return f"loads {'/'.join(cls.formats)} models, not {source.format}"
    unknown = unknown_options(cls, options)
    if unknown:
        return f"takes no option(s) {', '.join(unknown)}"
    if cls.distributions and hw.runtime_version(name) is None:
        return f"not installed (pip install 'deploykit[{cls.extra}]')"
    return None


def unknown_options(cls: type[registry.Backend], options: Mapping[str, Any]) -> list[str]:
    """The options in ``options`` that backend ``cls`` does not take (``Backend.option_names``)."""
    return sorted(k for k in options if k not in cls.option_names)


def check_options(cls: type[registry.Backend], options: Mapping[str, Any], where: str = "") -> None:
    """``UnknownOption`` naming what backend ``cls`` does not take and what it does (``where``
    prefixes the message, e.g. the dict entry the options came in)."""
    unknown = unknown_options(cls, options)
    if unknown:
        raise UnknownOption(f"{where}backend {cls.name!r} takes no option(s) {', '.join(unknown)}; its "
                            f"options: {', '.join(cls.option_names) or '(none)'}")


def policy_rank(cand: Candidate) -> int:
    """The candidate's rank in the policy (lower is better; given by its backend): how candidates
    of several artifacts of one model are merged, ties kept in the order the artifacts were given."""
    return cand.rank


def _priority(name: str) -> int:
    try:
        return registry.backend_class(name).priority
    except BackendUnavailable:
        return 10**6



__all__ = ["ENV_BACKEND", "Candidate", "Plan", "backend_reason", "check_backend_name", "check_options",
           "make_plan",
           "policy_rank", "unknown_options", "with_operator_override"]
