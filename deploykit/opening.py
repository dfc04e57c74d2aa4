"""Opening engines: one candidate of a plan on its backend, and a plan followed until one loads.

Used by the public ``load`` (``deploykit.loading``), by several artifacts (``deploykit.artifacts``)
and by the tuner, which all open candidates the same way: the options checked against the
backend's declared ``option_names``, the candidate's own options (e.g. onnxruntime's providers)
added, the backend's strict options under ``strict=True``. What runs is recorded on the plan; a
fallback — a better candidate that failed to load, or a runtime that dropped what was asked — is
put on ``engine.fallback``, shown in its repr, and announced with a ``FallbackWarning``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from . import backends as registry
from .engine import Engine
from .errors import BackendUnavailable, FallbackWarning, InvalidArgument, ModelLoadError, UnknownOption, warn
from .model import ModelSource
from .plan import Candidate, Plan
from .selection import check_options
from .spec import TensorSpec

log = logging.getLogger("deploykit")


def check_strict(strict: Any, options: Mapping[str, Any]) -> bool:
    """``strict`` as a bool; it cannot be combined with ``allow_fallback=True``."""
    if not isinstance(strict, bool):
        raise InvalidArgument(f"strict must be True or False, got {strict!r}")
    if strict and options.get("allow_fallback"):
        raise InvalidArgument("strict=True refuses every fallback; it cannot be combined with "
                              "allow_fallback=True")
    return strict


def open_engine(cand: Candidate, source: ModelSource, threads: int | None, options: Mapping[str, Any],
                *, strict: bool = False,
                present: tuple[Sequence[TensorSpec], Sequence[TensorSpec]] | None = None) -> Engine:
    """Load ``cand``'s backend on ``source`` with the caller's ``options`` (refused when the backend
    does not take them), the candidate's own options beneath them; ``present``: tensor names the
    engine shows (several artifacts of one model)."""
    cls = registry.backend_class(cand.backend)
    check_options(cls, options)
    own = cls.candidate_options(cand)
    # a candidate made from the caller's options (e.g. their providers) runs with those alone
    opts = dict(options) if own.keys() & options.keys() else {**own, **options}
    if strict:
        opts = {**cls.strict_options(), **opts}
    cls.runtime_version()
    engine = Engine(cls(source, threads=threads, **opts), source, present=present)
    log.info("loaded %s on %s (%s)", source.label, engine.backend, engine.device)
    return engine


def follow(plan: Plan, label: str, opener: Callable[[Candidate], Engine],
           first: Engine | None = None) -> Engine:
    """Load the plan's candidates in order until one loads (``first``: the first one, already
    loaded by a tuner); record failures on the plan, refuse any under ``plan.strict``."""
    errors: list[Exception] = []
    for i, cand in enumerate(plan.candidates):
        if i == 0 and first is not None:
            return settle(first, plan, cand)
        try:
            engine = opener(cand)
        except (BackendUnavailable, ModelLoadError) as e:
            plan.failed.append(replace(cand, reason=str(e)))
            errors.append(e)
            if plan.strict:
                raise type(e)(f"{label}: strict=True refuses to fall back: {cand.label} failed to "
                              f"load: {e}") from e
            if i + 1 < len(plan.candidates):
                log.warning("%s: %s failed to load, falling back to %s: %s", label, cand.label,
                            plan.candidates[i + 1].label, e)
            continue
        return settle(engine, plan, cand)
    if len(errors) == 1 and not plan.rejected:  # the one backend asked for: its own error says it all
        raise errors[0]
    error = ModelLoadError if any(isinstance(e, ModelLoadError) for e in errors) else BackendUnavailable
    raise error(f"{label}: no backend could run it — " + reasons(plan))


def reasons(plan: Plan) -> str:
    """Every failed and rejected candidate of ``plan`` with its reason, for an error message — less
    the backends rejected only because they load another format (they were never in the running)."""
    shown = [c for c in (*plan.failed, *plan.rejected) if not (c.reason or "").startswith("loads ")]
    return "; ".join(f"{c.label}: {c.reason}" for c in shown) or "(no candidate)"


def no_candidate(label: str, fmt: str, plan: Plan, options: Mapping[str, Any],
                 several: bool = False) -> NoReturn:
    """Raise the error that fits a plan with no viable candidate: no backend for the format, options
    no backend takes, or every candidate rejected (each with its reason)."""
    fits = [cls for cls in registry.classes() if fmt in cls.formats]
    if not fits:
        raise BackendUnavailable(f"{label}: no registered backend loads {fmt} models yet")
    unknown = sorted(k for k in options if not any(k in cls.option_names for cls in fits))
    if unknown:
        takes = "; ".join(f"{cls.name}: {', '.join(cls.option_names) or '(none)'}" for cls in fits)
        raise UnknownOption(f"no backend that loads {fmt} models takes option(s) {', '.join(unknown)} "
                              f"({takes})")
    what = "any of its artifacts" if several else "it"
    raise BackendUnavailable(f"{label}: no backend could run {what} — {reasons(plan)}")


def settle(engine: Engine, plan: Plan, cand: Candidate) -> Engine:
    """Record on the plan what actually runs, refuse a fallback under strict, announce one."""
    if plan.strict and engine.fallback:
        engine.close()
        raise BackendUnavailable(f"{engine.source.label}: strict=True refuses the fallback: "
                                 f"{engine.fallback}")
    active = engine.info.get("providers")
    plan.chosen = replace(cand, device=engine.device,
                          providers=tuple(active) if active else cand.providers)
    fallback = engine.fallback
    if plan.failed:
        passed = "; ".join(f"{c.label} ({c.reason})" for c in plan.failed)
        fallback = f"runs on {plan.chosen.label} because {passed} failed to load" + \
            (f"; {engine.fallback}" if engine.fallback else "")
    engine.record_plan(plan, fallback)
    if fallback:
        warn(f"{engine.source.label}: {fallback}", FallbackWarning)
    log.info("%s", plan.summary())
    return engine


__all__ = ["check_strict", "follow", "no_candidate", "open_engine", "reasons", "settle"]
