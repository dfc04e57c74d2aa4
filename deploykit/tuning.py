"""Selection by measurement: time every viable candidate on this machine, keep the fastest that agrees.

``dk.tune(model)`` starts from the rule's plan (``selection.make_plan``), loads each viable candidate,
runs it once on the inputs (given, or made up by :mod:`deploykit.synth`) and checks its outputs
against the reference with :mod:`deploykit.comparison`'s dtype-aware tolerances, then times the ones
that agree with :func:`deploykit._timing.measure`, interleaved in rounds so that a burst of load on a
shared machine hits every candidate alike. The result is the rule's plan reordered by median latency
(``Plan.reordered``, ``decided_by="measurement"``), every dropped candidate with its reason.

The reference is the rule's first candidate that loads and runs: the one ``dk.load`` would run
without tuning. Tuning must then never change what the model computes, only how fast: a faster
candidate is taken only when it agrees with what the user would otherwise get. (deploykit's numpy
interpreter is an independent implementation but only reads ONNX, lacks some operators and takes
seconds on a detector, and its float32 sums differ from ORT's too; pass ``reference="numpy"`` to use
it, or the expected outputs themselves.)

Decisions are cached on disk (:mod:`deploykit.tuning_cache`, ``docs/tuning.md``), keyed by everything
that can change them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, NoReturn

import numpy as np

from . import backends as registry
from ._timing import CLOCK, measure
from .agreement import Tolerance, diff_output, tolerance_table
from .arguments import check_number, check_threads
from .artifacts import Artifacts, ModelOrArtifacts, open_artifacts
from .engine import Engine, feeds_from
from .errors import (
    BackendUnavailable,
    DeployKitError,
    InputMismatch,
    InvalidArgument,
    ModelLoadError,
    UnknownOption,
)
from .hardware import HardwareReport, probe
from .opening import no_candidate
from .plan import Candidate, Plan
from .progress import ProgressFn, check_progress, progress_fn
from .spec import TensorSpec
from .synth import ValueRange, check_made_up, synthesize
from .tuning_cache import ENV_CACHE_DIR, cache_dir, cache_key, cache_path, read, store

log = logging.getLogger("deploykit")

#: Seconds of timed calls, all candidates together (loads and the checking call not counted).
DEFAULT_SECONDS = 1.0
#: The longest timing budget taken: beyond it a typo, not a plan (and past what the clock can count).
MAX_SECONDS = 86_400.0
#: Timing rounds: each candidate is timed once per round, in a rotated order, so that a burst of
#: load from elsewhere lands in one slot of one candidate and barely moves its median.
ROUNDS = 5
#: A candidate earlier in the rule's order keeps first place over one at most this much faster:
#: differences that small are within this machine's noise, and the policy breaks the tie.
MARGIN = 0.05
#: After the first round, a candidate whose *fastest* call took this many times the best median is
#: not timed again: it cannot win (its fastest call, not its median, so that a burst cannot drop it).
HOPELESS = 3.0

#: The reference: its label, its outputs, their specs.
_Ref = tuple[str, dict[str, Any], list[TensorSpec]]


@dataclass(frozen=True)
class TuneSettings:
    """How to tune: the inputs, the reference, the budget, the cache (see :func:`tune`)."""

    inputs: Mapping[str, Any] | np.ndarray | None = None
    shapes: Mapping[str, Sequence[int]] | None = None
    dims: Mapping[str, int] | None = None
    value_ranges: Mapping[str, ValueRange] | None = None
    reference: str | Mapping[str, Any] | None = None
    seconds: float = DEFAULT_SECONDS
    rtol: float | None = None
    atol: float | None = None
    cache: bool | str = True
    progress: bool | ProgressFn | None = None

    def check(self) -> None:
        check_number(self.seconds, "seconds", above=0)
        if self.seconds > MAX_SECONDS:
            raise InvalidArgument(f"seconds must be at most {MAX_SECONDS:g} (a day), got {self.seconds!r}")
        if self.cache is not True and self.cache is not False and self.cache != "refresh":
            raise InvalidArgument(f"cache must be True, False or 'refresh', got {self.cache!r}")
        check_progress(self.progress)
        check_made_up(None, self.shapes, self.dims, self.value_ranges)  # the model's names: later
        if isinstance(self.reference, Mapping) and not self.reference:
            raise InvalidArgument("reference: an empty dict of expected outputs checks nothing; give "
                                  "the outputs (name -> array), a backend name, or None")
        if self.reference is not None and not isinstance(self.reference, (str, Mapping)):
            raise InvalidArgument(f"reference must be None, a backend name or a dict name -> expected "
                                  f"output, got {self.reference!r}")
        tolerance_table(self.rtol, self.atol)
        if self.inputs is not None and (self.shapes or self.dims or self.value_ranges):
            raise InvalidArgument("shapes, dims and value_ranges shape made-up inputs; with inputs= "
                                  "given, leave them out")


def tune(
    model: ModelOrArtifacts,
    *,
    inputs: Mapping[str, Any] | np.ndarray | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    value_ranges: Mapping[str, ValueRange] | None = None,
    hardware: HardwareReport | None = None,
    reference: str | Mapping[str, Any] | None = None,
    seconds: float = DEFAULT_SECONDS,
    rtol: float | None = None,
    atol: float | None = None,
    cache: bool | str = True,
    progress: bool | ProgressFn | None = None,
    threads: int | None = None,
    check: bool | str = True,
    **options: Any,
) -> Plan:
    """Measure the candidates that can run ``model`` here and return the plan ordered by speed.

    ``model``: a model, several artifacts of one model (a list, or a ``.json`` manifest), as for
    ``dk.load``. ``inputs``: the feeds to time and check with (default: made up from the input
    specs; ``shapes``/``dims``/``value_ranges`` as for ``dk.bench``). ``hardware``: the report the
    rule's plan is made for (default: this machine's probe). ``reference``: None (the rule's first
    candidate that runs), a backend name (e.g. ``"numpy"``, run on the first artifact), or the
    expected outputs (a dict name -> array). ``rtol``/``atol`` override the float tolerances as in
    ``dk.compare``. ``seconds``: timing budget for all candidates together. ``cache``: True (use and
    store the decision), False, or ``"refresh"`` (measure again, store). ``progress``: None (a bar
    on a terminal), True, False, or a ``progress(done, total, label)`` callable. ``threads`` and
    ``**options`` go to every candidate's load, as in ``dk.load``.
    """
    threads = check_threads(threads)
    settings = TuneSettings(inputs, shapes, dims, value_ranges, reference, seconds, rtol, atol, cache,
                            progress)
    settings.check()
    arts = open_artifacts(model, check=check, options=options)
    if hardware is not None and not isinstance(hardware, HardwareReport):
        raise InvalidArgument(f"hardware must be a HardwareReport (dk.probe()) or None, got "
                              f"{type(hardware).__name__}")
    hw = hardware if hardware is not None else probe()
    plan = arts.plan(hw, options=options)
    if not plan.candidates:
        no_candidate(arts.label, "+".join(dict.fromkeys(src.format for src in arts.sources)), plan, options,
                     several=arts.several)
    plan, engine = decide(arts, plan, hw, settings, threads, dict(options))
    if engine is not None:
        engine.close()
    return plan


def tune_for_load(arts: Artifacts, plan: Plan, tune: bool | Mapping[str, Any], *, threads: int | None,
                  options: Mapping[str, Any]) -> tuple[Plan, Engine | None]:
    """``dk.load(..., tune=...)``: the tuned plan and the winner's engine, already loaded."""
    given = dict(tune) if isinstance(tune, Mapping) else {}
    allowed = [f.name for f in fields(TuneSettings)]
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise UnknownOption(f"tune= takes the keys {', '.join(allowed)}; not "
                              f"{', '.join(map(repr, unknown))}")
    settings = TuneSettings(**given)
    settings.check()
    if len(plan.candidates) < 2 and settings.reference is None:
        plan.notes.append("tune: one viable candidate, nothing to choose by measurement")
        return plan, None
    return decide(arts, plan, probe(), settings, threads, dict(options))


def decide(arts: Artifacts, plan: Plan, hw: HardwareReport, settings: TuneSettings, threads: int | None,
           options: dict[str, Any]) -> tuple[Plan, Engine | None]:
    """The cached decision when there is one whose winner still loads, else a fresh measurement."""
    path = key = None
    if settings.cache:
        key = cache_key(arts, plan, hw, settings, threads, options, MARGIN)
        path = cache_path(key)
        if settings.cache != "refresh":
            cached = read(arts, plan, path, key)
            if cached is not None:
                try:
                    opened = arts.open(cached.candidates[0], threads, options)
                except (BackendUnavailable, ModelLoadError) as e:
                    log.warning("%s: the cached choice %s no longer loads (%s); measuring again",
                                arts.label, cached.candidates[0].label, e)
                else:
                    log.info("%s: backend chosen by cached measurement (%s)", arts.label, path)
                    cached.chosen = cached.candidates[0]  # what runs: the engine is loaded
                    return cached, opened
    tuned, engine = _measure(arts, plan, settings, threads, options)
    if path is not None and key is not None:
        store(path, key, tuned, plan, arts)
        tuned.notes.append(f"decision cached in {path}")
    log.info("%s", tuned.summary())
    return tuned, engine


# -- measuring ------------------------------------------------------------------------------------
@dataclass
class _Trial:
    cand: Candidate
    engine: Engine
    first_s: float
    samples: list[np.ndarray]


def _measure(arts: Artifacts, plan: Plan, s: TuneSettings, threads: int | None,
             options: dict[str, Any]) -> tuple[Plan, Engine | None]:
    cands = list(plan.candidates)
    bar = _Bar(progress_fn(s.progress, "deploykit tune"), len(cands) * (1 + ROUNDS), arts.label)
    trials: list[_Trial] = []
    rejected: list[Candidate] = []
    notes: list[str] = []
    winner: Engine | None = None
    feeds: dict[str, Any] | None = None
    ref: _Ref | None = None
    table = tolerance_table(s.rtol, s.atol)
    try:
        if s.reference is not None:
            feeds, ref, notes = _given_reference(arts, s, threads, options)
        for cand in cands:
            bar.step(f"loading {cand.label}")
            try:
                engine = arts.open(cand, threads, options)
            except (BackendUnavailable, ModelLoadError) as e:
                rejected.append(replace(cand, reason=f"failed to load: {e}"))
                continue
            try:
                if feeds is None:
                    feeds, more = _feeds(arts, engine, s)
                    notes += more
                t0 = CLOCK()
                out = engine.run(feeds)
                first_s = (CLOCK() - t0) * 1e-9
                why = None if ref is None else _disagreement(ref, out, engine.outputs, table)
            except InvalidArgument:  # the caller's shapes/dims/value_ranges: no candidate's fault
                engine.close()
                raise
            except DeployKitError as e:
                engine.close()
                if isinstance(e, InputMismatch) and ref is None and feeds is None:
                    raise  # the inputs cannot even be made: no candidate would fare better
                rejected.append(replace(cand, reason=f"failed to run: {e}"))
                continue
            except BaseException:
                engine.close()
                raise
            if why:
                engine.close()
                rejected.append(replace(cand, reason=why))
                continue
            if ref is None:
                ref = (cand.label, out, list(engine.outputs))
                notes.insert(0, f"reference: {cand.label} (the rule's first candidate that runs)")
            trials.append(_Trial(cand, engine, first_s, []))
        if not trials:
            _none_left(arts.label, rejected, ref is not None, s.inputs is None)
        assert feeds is not None
        _time(trials, feeds, s.seconds, bar)
        ranked, note = _rank(trials)
        notes += note
        winner = next(t.engine for t in trials if t.cand.key == ranked[0].key)
    finally:
        bar.close()
        for t in trials:
            if t.engine is not winner:
                t.engine.close()
    tuned = plan.reordered(ranked, rejected, decided_by="measurement")
    tuned.notes = notes
    tuned.chosen = tuned.candidates[0]  # the winner, loaded (dk.tune closes it; dk.load keeps it)
    return tuned, winner


def _none_left(label: str, rejected: list[Candidate], ran: bool, made_up: bool) -> NoReturn:
    """Raise the error that says why no candidate is left: none loaded, none ran, none agreed."""
    why = "; ".join(f"{c.label}: {c.reason}" for c in rejected)
    if ran and any(not (c.reason or "").startswith(("failed to load", "failed to run")) for c in rejected):
        raise ModelLoadError(f"{label}: no candidate agrees with the reference — {why}")
    if any((c.reason or "").startswith("failed to run") for c in rejected):
        raise InputMismatch(f"{label}: no candidate ran the inputs — {why}"
                            + ("; give the sizes and values it needs (shapes=, dims=, value_ranges=) "
                               "or real inputs (inputs=)" if made_up else ""))
    raise ModelLoadError(f"{label}: no candidate loaded — {why}")


def _time(trials: list[_Trial], feeds: dict[str, Any], seconds: float, bar: _Bar) -> None:
    """Interleaved rounds of timed calls; hopeless candidates leave after the first round."""
    alive = list(trials)
    for r in range(ROUNDS):
        slot = seconds / (ROUNDS * len(trials))
        k = r % len(alive)
        for t in alive[k:] + alive[:k]:
            bar.step(f"timing {t.cand.label} (round {r + 1}/{ROUNDS})")
            slow = t.first_s > slot  # one call fills the slot: no warm-up beyond the checking call
            timing = measure(partial(t.engine.run, feeds), warmup=0 if slow else (3 if r == 0 else 1),
                             min_seconds=slot, min_iterations=1 if slow else 3)
            t.samples.append(timing.latencies)
        if r == 0 and len(alive) > 1:
            best = min(_p50(t) for t in alive)
            keep = [t for t in alive if float(t.samples[0].min()) * 1e3 <= HOPELESS * best]
            bar.skip((ROUNDS - 1) * (len(alive) - len(keep)))
            alive = keep


def _p50(t: _Trial) -> float:
    return float(np.median(np.concatenate(t.samples))) * 1e3


def _rank(trials: list[_Trial]) -> tuple[list[Candidate], list[str]]:
    """By median latency; the rule's earlier candidate wins a near tie (``MARGIN``)."""
    measured = [replace(t.cand, measured_ms=_p50(t)) for t in trials]  # in the rule's order
    fastest = min(measured, key=lambda c: c.measured_ms or 0.0)
    assert fastest.measured_ms is not None
    first = next(c for c in measured if (c.measured_ms or 0.0) <= fastest.measured_ms * (1 + MARGIN))
    rest = sorted((c for c in measured if c is not first), key=lambda c: c.measured_ms or 0.0)
    notes = [f"timed in {ROUNDS} interleaved rounds; calls per candidate: " + ", ".join(
        f"{t.cand.label} {sum(x.size for x in t.samples)}" for t in trials)]
    if first is not fastest:
        notes.append(f"{first.label} kept first: within {MARGIN:.0%} of {fastest.label} and earlier "
                     "in the rule's order")
    return [first, *rest], notes


# -- inputs and the reference ---------------------------------------------------------------------
def _feeds(arts: Artifacts, engine: Engine, s: TuneSettings) -> tuple[dict[str, Any], list[str]]:
    specs = arts.feed_specs() or engine.inputs
    if s.inputs is not None:
        return feeds_from(s.inputs, specs), ["inputs: as given"]
    source = arts.sources[arts.names_from]
    made = synthesize(specs, shapes=s.shapes, dims=s.dims, value_ranges=s.value_ranges,
                      proto=source.proto if source.format == "onnx" else None)
    head = "inputs: made up from the input specs (no inputs= given); agreement and speed are " \
           "checked on them" + ("" if made.representative else ", which may not be representative:")
    return dict(made.feeds), [head, *made.notes]


def _given_reference(arts: Artifacts, s: TuneSettings, threads: int | None,
                     options: dict[str, Any]) -> tuple[dict[str, Any] | None, _Ref, list[str]]:
    """The reference from ``reference=``: expected outputs, or a backend run on the first artifact."""
    if isinstance(s.reference, Mapping):
        expected = {k: np.asarray(v) for k, v in s.reference.items()}
        specs = [TensorSpec(k, tuple(v.shape), v.dtype) for k, v in expected.items()]
        what = "the expected outputs given"
        return None, (what, expected, specs), [f"reference: {what}"]
    assert isinstance(s.reference, str)
    name = registry.canonical_name(s.reference)
    artifact = arts.labels[arts.names_from] if arts.several else None
    takes = registry.backend_class(name).option_names  # its own options only
    engine = arts.open(Candidate(name, artifact=artifact), threads,
                       {k: v for k, v in options.items() if k in takes})
    try:
        feeds, notes = _feeds(arts, engine, s)
        out = engine.run(feeds)
        label = f"{engine.backend} on {engine.device}" + (f" [{artifact}]" if artifact else "")
        return feeds, (label, out, list(engine.outputs)), [f"reference: {label} (reference=)", *notes]
    finally:
        engine.close()


def _disagreement(ref: _Ref, out: dict[str, Any],
                  specs: list[TensorSpec], table: Mapping[str, Tolerance]) -> str | None:
    """Why ``out`` disagrees with the reference's outputs (the worst output), or None."""
    label, expected, ref_specs = ref
    by_name = {s.name: s for s in specs}
    for ref_spec in ref_specs:
        if ref_spec.name not in out:
            return f"has no output {ref_spec.name!r} to compare with {label} (it has {', '.join(out)})"
        d = diff_output("candidate", ref_spec, expected[ref_spec.name], by_name[ref_spec.name],
                  out[ref_spec.name], table)
        if d.note:
            return f"output {d.output!r} disagrees with {label}: {d.note}"
        if not d.ok:
            return (f"output {d.output!r} disagrees with {label}: max |error| {d.max_abs:.3g} > "
                    f"tolerance {d.atol:.2g} + {d.rtol:.2g}·|ref| ({d.kind}; {d.mismatched} of "
                    f"{d.size} elements out)")
    return None


# -- progress -------------------------------------------------------------------------------------
class _Bar:
    """Counts steps for the progress callback and always ends it."""

    def __init__(self, fn: ProgressFn | None, total: int, label: str) -> None:
        self.fn, self.total, self.done = fn, total, 0

    def step(self, label: str) -> None:
        if self.fn is not None:
            self.fn(self.done, self.total, label)
        self.done += 1

    def skip(self, n: int) -> None:
        self.done += n

    def close(self) -> None:
        if self.fn is not None and self.done <= self.total:
            self.fn(self.total, self.total, "done")
            self.done = self.total + 1


def __getattr__(name: str) -> Any:
    if name == "Settings":  # the former name: deploykit.settings is the environment's table
        import warnings

        warnings.warn("deploykit.tuning.Settings is now TuneSettings", DeprecationWarning, stacklevel=2)
        return TuneSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_SECONDS", "ENV_CACHE_DIR", "TuneSettings", "cache_dir", "tune"]
