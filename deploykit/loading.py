"""``dk.load``: a model (or several artifacts of one) to a running Engine, by rule or by measurement.

The public entry point over the layers beneath it: ``model.open_model`` reads the artifact,
``selection`` makes the plan, ``tuning`` reorders it by measurement when asked, ``opening`` follows
it until a candidate loads. See ``docs/selection.md`` and ``docs/tuning.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

from .arguments import check_threads
from .artifacts import Artifacts, is_several, open_artifacts
from .bundle.bundle import is_bundle, open_bundle
from .engine import Engine
from .errors import DeployKitWarning, InputMismatch, InvalidArgument, warn
from .model import ModelLike, open_model
from .opening import check_strict, follow, no_candidate
from .plan import Plan
from .selection import ENV_BACKEND, check_backend_name, make_plan, with_operator_override
from .tuning import tune_for_load

log = logging.getLogger("deploykit")


def load(
    model: ModelLike | Sequence[ModelLike],
    backend: str = "auto",
    *,
    threads: int | None = None,
    check: bool | str = True,
    strict: bool = False,
    tune: bool | Mapping[str, Any] = False,
    verify: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Engine:
    """Load a model (path, bytes or ``onnx.ModelProto``) on a backend and return an Engine.

    ``backend="auto"`` follows a plan made by rule from this machine's probe (``docs/selection.md``):
    the candidates that can run the model, best first, each rejected one with its reason. The first
    viable candidate is loaded; if it fails to load, the next is tried, and the engine says so
    (``engine.fallback``, its repr, a ``FallbackWarning``). The environment variable
    ``DEPLOYKIT_BACKEND`` replaces ``"auto"`` with a backend name (for operators). ``strict=True``
    refuses every fallback: a candidate that fails to load or a dropped onnxruntime provider is an
    error. ``engine.plan`` says what runs and why.
    ``threads`` defaults to the CPUs this process may use (more than those warns; more than 4x the
    logical CPUs is refused) — except on the numpy backend, whose default is one BLAS thread per run
    (measured faster on a busy machine; ``docs/reference-backend.md``). ``check`` runs the ONNX
    checker and logs its findings (``"strict"``: refuse the model; ``False``: skip it). Other
    keyword options go to the backend (e.g. ``providers=[...]`` for onnxruntime; each backend lists
    its own in ``docs/backends.md``).

    ``tune=True`` (or a dict of :func:`deploykit.tune` settings) with ``"auto"`` orders the
    candidates by measurement instead: each viable one is timed and checked against the reference,
    the fastest that agrees runs, and the decision is cached on disk (``DEPLOYKIT_BACKEND`` still
    wins). When the inputs to measure with cannot be made up, the model loads by rule with a
    warning. ``model`` may also be several artifacts of one model (a list, or a ``.json``
    manifest): they become candidates of one plan, and the engine presents the first artifact's
    tensor names whichever runs (``docs/tuning.md``).

    ``model`` may be a bundle (a folder with ``deploykit.json``, or its ``.zip``/``.tar``): every
    file is checked against the manifest's sizes and sha256 before anything is parsed
    (``IntegrityError`` naming the file), ``verify`` (a public key, PEM) checks its signature too,
    its artifacts are loaded as above, and the engine carries ``pipeline``, ``labels`` and ``bundle``
    (``engine.predict(image)``: preprocessing and model in one call; ``docs/bundles.md``).
    """
    if is_bundle(model):
        return _load_bundle(model, backend, threads, check, strict, tune, verify, options)
    if verify is not None:
        raise InvalidArgument("verify checks a bundle's signature; this model is not a bundle (a folder with "
                              "deploykit.json or its .zip/.tar)")
    threads = check_threads(threads)
    backend = check_backend_name(backend)
    strict = check_strict(strict, options)
    tune = _check_tune(tune)
    if is_several(model):
        return _load_several(model, backend, threads, check, strict, tune, options)
    source = open_model(cast(ModelLike, model), check=check)
    plan = with_operator_override(backend, lambda requested, decided_by: make_plan(
        source, backend=requested, options=options, strict=strict, decided_by=decided_by))
    named = plan.requested != "auto"
    if not plan.candidates:
        no_candidate(source.label, source.format, plan, options)
    arts = Artifacts([source], [source.label])
    plan, first = _tuned(arts, plan, tune, threads, options, named)
    return follow(plan, source.label, lambda c: arts.open(c, threads, options, strict=strict), first)


def _load_bundle(model: Any, backend: str, threads: int | None, check: bool | str, strict: bool,
                 tune: bool | Mapping[str, Any], verify: Any, options: dict[str, Any]) -> Engine:
    """``load`` for a bundle: verified first, then its artifacts; the engine carries what it holds."""
    bundle = open_bundle(model, verify=verify)
    pipeline, labels = bundle.pipeline(), bundle.labels()  # before the engine: a bad one loses nothing
    if tune is True and bundle.manifest.tuning:
        tune = bundle.manifest.tuning  # the bundle's tuning hints (inputs to measure with...)
    artifacts = [str(p) for p in bundle.artifacts]
    engine = load(artifacts if len(artifacts) > 1 else artifacts[0], backend, threads=threads, check=check,
                  strict=strict, tune=tune, **options)
    engine.pipeline, engine.labels, engine.bundle = pipeline, labels, bundle
    return engine


def _load_several(model: Any, backend: str, threads: int | None, check: bool | str, strict: bool,
                  tune: bool | Mapping[str, Any], options: dict[str, Any]) -> Engine:
    """``load`` for several artifacts of one model (see ``deploykit.artifacts``)."""
    arts = open_artifacts(model, check=check, options=options)
    plan = with_operator_override(backend, lambda requested, decided_by: arts.plan(
        backend=requested, options=options, strict=strict, decided_by=decided_by))
    named = plan.requested != "auto"
    if not plan.candidates:
        no_candidate(arts.label, "+".join(dict.fromkeys(s.format for s in arts.sources)), plan, options,
                     several=True)
    plan, first = _tuned(arts, plan, tune, threads, options, named)
    return follow(plan, arts.label, lambda c: arts.open(c, threads, options, strict=strict), first)


def _tuned(arts: Artifacts, plan: Plan, tune: bool | Mapping[str, Any], threads: int | None,
           options: dict[str, Any], named: bool) -> tuple[Plan, Engine | None]:
    """The plan reordered by measurement when ``tune`` asks for it (never over the operator's or the
    caller's named backend); the rule's plan, with a warning, when the inputs cannot be made up."""
    if not tune or named or plan.decided_by == ENV_BACKEND:
        return plan, None
    try:
        return tune_for_load(arts, plan, tune, threads=threads, options=options)
    except InputMismatch as e:
        note = (f"tune: could not measure ({e}); loaded by rule instead. Give tune={{'inputs': ...}} "
                "(real inputs) or tune={'shapes': ..., 'dims': ..., 'value_ranges': ...}")
        warn(f"{arts.label}: {note}", DeployKitWarning)
        plan.notes.append(note)
        return plan, None


def _check_tune(tune: Any) -> bool | Mapping[str, Any]:
    if isinstance(tune, (bool, Mapping)):
        return tune
    raise InvalidArgument(f"tune must be True, False or a dict of dk.tune settings, got {tune!r}")


__all__ = ["load"]
