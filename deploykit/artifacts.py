"""Several artifacts of one model (``embed.onnx``, ``embed.tflite``, ...) as candidates of one model.

``dk.load(["embed.onnx", "embed.tflite"])`` (or a manifest ``{"artifacts": [...]}`` in a ``.json``
file, paths relative to it) makes one plan over every artifact: by rule the candidates are merged in
policy order (``selection.policy_rank``), ties in the order the artifacts were given; by measurement
(``tune=True``) the fastest that agrees with the reference wins.

The artifacts must have the same number of inputs and outputs, with the same dtypes and compatible
shapes (a fixed dimension equal wherever both fix it); this is checked when they are opened, reading
each artifact's specs (an ONNX graph from its protobuf, a TFLite file through LiteRT). Whichever
artifact runs, the engine presents the *first* artifact's tensor names, so one ``engine.run(feeds)``
call works for all: tensors pair by name where both artifacts have the name, the rest by position.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import backends as _registry
from .engine import Engine
from .errors import BackendUnavailable, ModelLoadError, ModelNotFound
from .hardware import HardwareReport, probe
from .model import ModelLike, ModelSource, onnx_io_specs, open_model
from .opening import open_engine
from .plan import Candidate, Plan
from .selection import check_backend_name, make_plan, policy_rank
from .spec import TensorSpec, dtype_name, pair_specs

log = logging.getLogger("deploykit")

#: What ``dk.load`` / ``dk.tune`` accept: one model, several artifacts of one model, or a manifest path.
ModelOrArtifacts = ModelLike | Sequence[ModelLike]
Specs = tuple[list[TensorSpec], list[TensorSpec]]


def is_several(model: Any) -> bool:
    """True for a list/tuple of artifacts or the path of a ``.json`` manifest naming them."""
    if isinstance(model, (list, tuple)):
        return True
    return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".json"


def read_manifest(path: str | os.PathLike[str]) -> list[Path]:
    """The artifact paths a manifest names (``{"artifacts": ["a.onnx", "a.tflite"]}``), resolved
    against the manifest's folder."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelNotFound(f"manifest not found: {file}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{file}: cannot read the manifest ({e})") from e
    items = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise ModelLoadError(f'{file}: a manifest is a JSON object {{"artifacts": ["model.onnx", '
                             f'"model.tflite"]}} (paths relative to it); got {str(data)[:120]}')
    return [file.parent / item for item in items]


@dataclass
class Artifacts:
    """The artifacts of one model, opened and checked; one artifact is the ordinary case."""

    sources: list[ModelSource]
    #: unique labels, in the order given (``Plan.artifacts`` and ``Candidate.artifact``)
    labels: list[str]
    #: per artifact: its (inputs, outputs) as its backend names them; None when unreadable here
    specs: list[Specs | None] = field(default_factory=list)
    #: the artifact whose tensor names are presented (the first whose specs could be read)
    names_from: int = 0

    @property
    def several(self) -> bool:
        return len(self.sources) > 1

    @property
    def label(self) -> str:
        return self.labels[0] if not self.several else "[" + ", ".join(self.labels) + "]"

    def source_of(self, cand: Candidate) -> ModelSource:
        return self.sources[0 if cand.artifact is None else self.labels.index(cand.artifact)]

    def index_of(self, cand: Candidate) -> int | None:
        return None if cand.artifact is None else self.labels.index(cand.artifact)

    # -- the plan ---------------------------------------------------------------------------------
    def plan(self, hardware: HardwareReport | None = None, *, backend: str = "auto",
             options: Mapping[str, Any] | None = None, strict: bool = False,
             decided_by: str | None = None) -> Plan:
        """The rule's plan: for several artifacts, every artifact's candidates merged by policy
        rank, ties in the order given; a named backend rejects the artifacts it cannot load."""
        if not self.several:
            return make_plan(self.sources[0], hardware, backend=backend, options=options, strict=strict,
                             decided_by=decided_by)
        hw = hardware if hardware is not None else probe()
        viable: list[Candidate] = []
        rejected: list[Candidate] = []
        requested = check_backend_name(backend)
        for source, label in zip(self.sources, self.labels):
            try:
                one = make_plan(source, hw, backend=backend, options=options, strict=strict,
                                decided_by=decided_by)
            except ModelLoadError as e:  # a named backend that does not load this artifact's format
                rejected.append(Candidate(requested, reason=str(e).removeprefix(f"{source.label}: "),
                                          artifact=label))
                continue
            requested, decided_by = one.requested, one.decided_by
            viable += [replace(c, artifact=label) for c in one.candidates]
            rejected += [replace(c, artifact=label) for c in one.rejected]
        viable.sort(key=policy_rank)  # stable: ties stay in the order the artifacts were given
        have = {s.format for s in self.sources}
        rejected = [c for c in rejected if not _other_format(c, have, self.source_of(c).format)]
        formats = "+".join(dict.fromkeys(s.format for s in self.sources))
        return Plan(self.label, formats, viable, rejected, requested=requested,
                    decided_by=decided_by or ("rule" if requested == "auto" else "caller"), strict=strict,
                    hardware=hw.fingerprint() if requested == "auto" else None,
                    artifacts=list(self.labels))

    # -- engines ----------------------------------------------------------------------------------
    def open(self, cand: Candidate, threads: int | None, options: Mapping[str, Any],
             strict: bool = False) -> Engine:
        """Load the candidate's artifact on its backend, presenting the shared tensor names."""
        return open_engine(cand, self.source_of(cand), threads, options, strict=strict,
                           present=self.presented(cand))

    def presented(self, cand: Candidate) -> Specs | None:
        """The tensor names an engine of ``cand`` presents (None: its own)."""
        index = self.index_of(cand)
        if index is None or index == self.names_from or not self.several:
            return None
        return self.specs[self.names_from]

    def io_specs(self) -> Specs | None:
        """The presented artifact's (inputs, outputs) — read now for a single artifact; None when no
        runtime here reads it."""
        if self.specs:
            return self.specs[self.names_from]
        return _read_specs(self.sources[0], {})

    def feed_specs(self) -> list[TensorSpec] | None:
        """Input specs to make up feeds from: the presented names, each dimension fixed where any
        artifact fixes it. None for one artifact (the caller uses the loaded engine's)."""
        if not self.several or self.specs[self.names_from] is None:
            return None
        shown = self.specs[self.names_from]
        assert shown is not None
        merged = list(shown[0])
        for other in self.specs:
            if other is None:
                continue
            for k, spec in enumerate(_pairing(shown[0], other[0])):
                merged[k] = replace(merged[k], shape=_merge_shape(merged[k].shape, spec.shape))
        return merged


def open_artifacts(model: ModelOrArtifacts, *, check: bool | str = True,
                   options: Mapping[str, Any] | None = None) -> Artifacts:
    """Open one model or several artifacts of one (a list, or a manifest path); for several, read
    every artifact's specs — as the backend options given would present them, e.g. LiteRT's
    ``dequantize=True`` or ``signature=`` — and check they are compatible (``ModelLoadError``
    naming the mismatch)."""
    items: list[Any] = read_manifest(model) if isinstance(model, (str, os.PathLike)) and is_several(model) \
        else list(model) if isinstance(model, (list, tuple)) else [model]
    if not items:
        raise ModelLoadError("no artifacts given: pass a model, or a list of artifacts of one model")
    sources = [open_model(item, check=check) for item in items]
    labels: list[str] = []
    for s in sources:
        label, n = s.label, 2
        while label in labels:
            label, n = f"{s.label} #{n}", n + 1
        labels.append(label)
    arts = Artifacts(sources, labels)
    if arts.several:
        arts.specs = [_read_specs(s, options or {}) for s in sources]
        readable = [i for i, sp in enumerate(arts.specs) if sp is not None]
        if readable:
            arts.names_from = readable[0]
            first = arts.specs[arts.names_from]
            assert first is not None
            for i in readable[1:]:
                other = arts.specs[i]
                assert other is not None
                _check_compatible(labels[arts.names_from], first, labels[i], other)
    return arts


def _other_format(cand: Candidate, formats: set[str], fmt: str) -> bool:
    """True when ``cand`` is rejected only for the format and another artifact has one it loads:
    ``tflite`` on the ``.onnx`` artifact is no loss when the ``.tflite`` one is there too."""
    if cand.backend not in _registry.REGISTRY:
        return False
    loads = set(_registry.backend_class(cand.backend).formats)
    return fmt not in loads and bool(loads & formats)


# -- specs ----------------------------------------------------------------------------------------
def _read_specs(source: ModelSource, options: Mapping[str, Any]) -> Specs | None:
    """An artifact's inputs and outputs as its backend names them (with the options it takes of
    ``options``); None when no runtime here reads it."""
    if source.format == "onnx":
        return onnx_io_specs(source.proto)
    for name in _registry.auto_candidates(source.format):
        cls = _registry.backend_class(name)
        mine = {k: v for k, v in options.items() if k in cls.option_names}
        try:
            backend = cls(source, threads=1, **mine)
        except (BackendUnavailable, ModelLoadError) as e:
            log.info("%s: %s cannot read its specs (%s)", source.label, name, e)
            continue
        try:
            return list(backend.inputs), list(backend.outputs)
        finally:
            backend.close()
    return None


def _pairing(shown: list[TensorSpec], other: list[TensorSpec]) -> list[TensorSpec]:
    """``other``'s specs (their own names kept) in ``shown``'s order (``spec.pair_specs``; the
    counts were checked equal, so every tensor pairs)."""
    paired = pair_specs(shown, other)
    assert paired is not None
    return paired


def _by_position(shown: list[TensorSpec], other: list[TensorSpec]) -> list[str]:
    """The presented names that ``_pairing`` pairs by position (no same-named tensor in ``other``)."""
    names = {s.name for s in other}
    return [s.name for s in shown if s.name not in names]


def _check_compatible(a: str, first: Specs, b: str, other: Specs) -> None:
    for kind, mine, theirs in (("input", first[0], other[0]), ("output", first[1], other[1])):
        if len(mine) != len(theirs):
            raise ModelLoadError(
                f"{b} has {len(theirs)} {kind}(s) ({', '.join(map(str, theirs))}) but {a} has "
                f"{len(mine)} ({', '.join(map(str, mine))}); the artifacts of one model must have the "
                "same inputs and outputs")
        for want, got in zip(mine, _pairing(mine, theirs)):
            problem = _mismatch(want, got)
            if problem:
                raise ModelLoadError(f"{kind} {want.name!r} of {a} ({want}) and {got.name!r} of {b} "
                                     f"({got}): {problem}; the artifacts of one model must take and "
                                     "give the same tensors")
        positional = _by_position(mine, theirs)
        if positional:  # nothing but dtypes and shapes vouches for this pairing
            kinds = [(dtype_name(t.dtype), t.shape) for t in mine if t.name in positional]
            alike = len(set(kinds)) < len(kinds)  # two of them could be swapped unnoticed
            log.log(logging.WARNING if alike else logging.INFO,
                    "%s: %s(s) %s paired with %s's by position (no tensor of the same name)%s", b, kind,
                    ", ".join(map(repr, positional)), a,
                    "; some have the same dtype and shape, so only tuning (tune=True) checks that "
                    "they agree" if alike else "")


def _mismatch(a: TensorSpec, b: TensorSpec) -> str:
    if a.dtype != b.dtype:
        return f"dtype {dtype_name(a.dtype)} vs {dtype_name(b.dtype)}"
    if a.shape is None or b.shape is None:
        return ""
    if len(a.shape) != len(b.shape):
        return f"rank {len(a.shape)} vs {len(b.shape)}"
    for axis, (x, y) in enumerate(zip(a.shape, b.shape)):
        if isinstance(x, int) and isinstance(y, int) and x != y:
            return f"dimension {axis} is {x} vs {y}"
    return ""


def _merge_shape(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(x if isinstance(x, int) else y if isinstance(y, int) else x for x, y in zip(a, b))


__all__ = ["Artifacts", "ModelOrArtifacts", "is_several", "open_artifacts", "read_manifest"]
