"""The inputs ``dk.bench`` times with: batch sizes the model can take, feeds per batch size (given
ones tiled or cut, or made up by :mod:`deploykit.synth`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import feeds_from
from ..errors import InvalidArgument
from ..model import ModelSource
from ..spec import TensorSpec, dtype_name
from ..synth import DEFAULT_BATCH, ValueRange, batch_dims, synthesize


@dataclass
class Feeds:
    """Feeds per batch size, each input described at the first batch, and how far to trust them."""

    by_batch: dict[int, dict[str, Any]]
    described: list[str]
    synthesized: bool
    representative: bool
    notes: list[str] = field(default_factory=list)


def batch_sizes(specs: list[TensorSpec], asked: list[int] | None,
                inputs: Mapping[str, Any] | np.ndarray | None,
                shapes: Mapping[str, Sequence[int]] | None) -> list[int]:
    """The batch sizes to bench: those asked if the model can take them, else the one it implies."""
    dynamic, fixed = batch_dims(specs)
    signature = ", ".join(str(s) for s in specs)
    if asked is None:
        if not dynamic:
            return [fixed if fixed is not None else 1]
        first = _first_dim(specs, inputs, shapes)
        return [first if first is not None else DEFAULT_BATCH]
    if dynamic:
        return asked
    if fixed is None:
        raise InvalidArgument(f"batch_sizes {asked}: the model has no batch dimension (no input "
                              f"of rank >= 1: {signature}); leave batch_sizes out")
    if asked != [fixed]:
        raise InvalidArgument(
            f"batch_sizes {asked}: the model fixes the batch (first) dimension to {fixed} "
            f"({signature}); leave batch_sizes out, or export the model with a dynamic batch "
            "dimension")
    return asked


def _first_dim(specs: list[TensorSpec], inputs: Mapping[str, Any] | np.ndarray | None,
               shapes: Mapping[str, Sequence[int]] | None) -> int | None:
    """Batch size implied by given inputs or shapes (first dynamic-batch input's first axis)."""
    given = as_feeds(specs, inputs) if inputs is not None else {}
    for s in specs:
        if s.kind != "tensor" or not s.shape or isinstance(s.shape[0], int):
            continue
        if s.name in given and np.ndim(given[s.name]) >= 1:
            return int(np.shape(given[s.name])[0])
        if shapes and s.name in shapes and len(shapes[s.name]) >= 1:
            return int(shapes[s.name][0])
    return None


def as_feeds(specs: list[TensorSpec], inputs: Mapping[str, Any] | np.ndarray) -> dict[str, Any]:
    """``inputs`` as a dict; a bare array is the one input of a one-input model (the engine's rule)."""
    return feeds_from(inputs, specs)


def make_feeds(specs: list[TensorSpec], batches: list[int],
               inputs: Mapping[str, Any] | np.ndarray | None,
               shapes: Mapping[str, Sequence[int]] | None, dims: Mapping[str, int] | None,
               value_ranges: Mapping[str, ValueRange] | None, source: ModelSource,
               seed: int) -> Feeds:
    """Feeds for every batch size: the given inputs fitted to it, or made-up ones."""
    if inputs is not None:
        feeds = _given_feeds(specs, batches, inputs)
    else:
        feeds = _made_up_feeds(specs, batches, shapes, dims, value_ranges, source, seed)
    if len(batches) > 1:
        feeds.notes.append(f"inputs are shown at batch {batches[0]}; each row's first dimension is "
                           "its batch")
    return feeds


def _given_feeds(specs: list[TensorSpec], batches: list[int],
                 inputs: Mapping[str, Any] | np.ndarray) -> Feeds:
    given = as_feeds(specs, inputs)
    dynamic = {s.name for s in specs if s.kind == "tensor" and s.shape and not isinstance(s.shape[0], int)}
    by_batch = {b: {k: _rebatch(v, b) if k in dynamic else v for k, v in given.items()} for b in batches}
    notes = []
    if any(np.shape(v)[:1] != (b,) for b in batches for k, v in given.items() if k in dynamic):
        notes.append("the given inputs were repeated or cut along the first axis to each batch size")
    return Feeds(by_batch, _described(by_batch[batches[0]]), False, True, notes)


def _made_up_feeds(specs: list[TensorSpec], batches: list[int],
                   shapes: Mapping[str, Sequence[int]] | None, dims: Mapping[str, int] | None,
                   value_ranges: Mapping[str, ValueRange] | None, source: ModelSource,
                   seed: int) -> Feeds:
    proto = source.proto if source.format == "onnx" else None
    by_batch: dict[int, dict[str, Any]] = {}
    seen: list[str] = []
    representative = True
    for b in batches:
        made = synthesize(specs, batch=b, shapes=shapes, dims=dims, value_ranges=value_ranges,
                          proto=proto, seed=seed)
        by_batch[b] = dict(made.feeds)
        representative = representative and made.representative
        seen += [n for n in made.notes if n not in seen]
    notes = ["inputs were made up from the model's input specs (no inputs= given)"
             + ("" if representative else "; they may not be representative:"), *seen]
    return Feeds(by_batch, _described(by_batch[batches[0]]), True, representative, notes)


def _rebatch(value: Any, b: int) -> Any:
    a = np.asarray(value)
    if a.ndim == 0 or a.shape[0] == b or a.shape[0] == 0:
        return value
    return np.ascontiguousarray(np.take(a, np.arange(b) % a.shape[0], axis=0))


def describe(value: Any) -> str:
    """``dtype[shape]`` of an array-like, e.g. ``float32[1,3,8,8]``."""
    a = np.asarray(value)
    return f"{dtype_name(a.dtype)}[{','.join(map(str, a.shape))}]"


def _described(feeds: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {describe(v)}" for k, v in feeds.items()]


__all__ = ["Feeds", "as_feeds", "batch_sizes", "describe", "make_feeds"]
