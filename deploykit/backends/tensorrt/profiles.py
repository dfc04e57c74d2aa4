"""TensorRT optimization profiles from a model's TensorSpecs and the caller's ranges, and the check
that a run's shapes fit one of them — an input outside every profile is an ``InputMismatch`` naming
the ranges, never a silent rebuild (TensorRT would otherwise fail deep in ``execute_async_v3``).

A profile gives every input a (min, opt, max) shape. Fixed dimensions are themselves three times;
a symbolic dimension takes the caller's range for it (``shapes={"x": [(1, 3, 224, 224), (8, 3, 224,
224), (32, 3, 224, 224)]}``, or ``dims={"batch": (1, 8, 32)}`` for every input that names the
dimension), and a symbolic batch (the first axis) defaults to ``(1, DEFAULT_BATCH_OPT,
DEFAULT_BATCH_MAX)``; any other symbolic dimension without a range is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import InputMismatch, InvalidArgument
from ...spec import TensorSpec

DEFAULT_BATCH_OPT, DEFAULT_BATCH_MAX = 1, 32
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """One optimization profile: input name -> (min, opt, max) shape."""

    ranges: dict[str, tuple[Shape, Shape, Shape]]

    def fits(self, shapes: Mapping[str, Shape]) -> bool:
        return all(name in self.ranges and len(shape) == len(self.ranges[name][0])
                   and all(lo <= s <= hi for s, lo, hi in zip(shape, self.ranges[name][0],
                                                               self.ranges[name][2]))
                   for name, shape in shapes.items())

    def describe(self) -> str:
        return "; ".join(f"{name}: min {list(lo)}, opt {list(opt)}, max {list(hi)}"
                         for name, (lo, opt, hi) in self.ranges.items())

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {name: [list(s) for s in triple] for name, triple in self.ranges.items()}


def derive(inputs: Sequence[TensorSpec], shapes: Mapping[str, Any] | None = None,
           dims: Mapping[str, Any] | None = None) -> Profile:
    """The profile for ``inputs``: fixed dimensions as declared, symbolic ones from ``shapes`` (input
    name -> [min, opt, max] shapes) or ``dims`` (dimension name -> (min, opt, max)), a symbolic batch
    from the defaults."""
    shapes, dims = dict(shapes or {}), dict(dims or {})
    names = {s.name for s in inputs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise InvalidArgument(f"shapes: no input {', '.join(map(repr, unknown))}; the inputs: "
                              f"{', '.join(sorted(names))}")
    ranges: dict[str, tuple[Shape, Shape, Shape]] = {}
    for spec in inputs:
        if spec.shape is None:
            raise InvalidArgument(f"input {spec.name} declares no rank: give shapes={{{spec.name!r}: "
                                  "[min, opt, max]}}")
        if spec.name in shapes:
            ranges[spec.name] = _given(spec, shapes[spec.name])
            continue
        triple: list[list[int]] = [[], [], []]
        for axis, dim in enumerate(spec.shape):
            lo, opt, hi = _dim_range(spec, axis, dim, dims)
            for k, v in enumerate((lo, opt, hi)):
                triple[k].append(v)
        ranges[spec.name] = (tuple(triple[0]), tuple(triple[1]), tuple(triple[2]))
    return Profile(ranges)


def _dim_range(spec: TensorSpec, axis: int, dim: Any, dims: Mapping[str, Any]) -> tuple[int, int, int]:
    if isinstance(dim, int) and dim > 0:
        return dim, dim, dim
    if isinstance(dim, str) and dim in dims:
        return _triple(dims[dim], f"dims[{dim!r}]")
    if axis == 0:
        return 1, DEFAULT_BATCH_OPT, DEFAULT_BATCH_MAX
    label = f"dimension {axis} ({dim!r})" if dim is not None else f"dimension {axis}"
    raise InvalidArgument(f"input {spec}: {label} is symbolic and has no range; give dims={{"
                          f"{dim if isinstance(dim, str) else 'name'!r}: (min, opt, max)}} or shapes={{"
                          f"{spec.name!r}: [min, opt, max]}}")


def _triple(value: Any, what: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{what}: give (min, opt, max) sizes, got {value!r}") from e
    if not 1 <= lo <= opt <= hi:
        raise InvalidArgument(f"{what}: need 1 <= min <= opt <= max, got {(lo, opt, hi)}")
    return lo, opt, hi


def _given(spec: TensorSpec, value: Any) -> tuple[Shape, Shape, Shape]:
    try:
        lo, opt, hi = (tuple(int(d) for d in s) for s in value)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"shapes[{spec.name!r}]: give [min, opt, max] shapes, got {value!r}") from e
    rank = len(spec.shape or ())
    if not len(lo) == len(opt) == len(hi) == rank:
        raise InvalidArgument(f"shapes[{spec.name!r}]: {spec} has rank {rank}; got ranks "
                              f"{len(lo)}, {len(opt)}, {len(hi)}")
    for axis, (declared, a, b, c) in enumerate(zip(spec.shape or (), lo, opt, hi)):
        if not 1 <= a <= b <= c:
            raise InvalidArgument(f"shapes[{spec.name!r}] axis {axis}: need 1 <= min <= opt <= max, got "
                                  f"{(a, b, c)}")
        if isinstance(declared, int) and declared > 0 and not a == b == c == declared:
            raise InvalidArgument(f"shapes[{spec.name!r}] axis {axis}: the model fixes it to {declared}")
    return lo, opt, hi


def select(profiles: Sequence[Profile], shapes: Mapping[str, Shape]) -> int:
    """The first profile the run's input shapes fit; ``InputMismatch`` naming every range if none."""
    for index, profile in enumerate(profiles):
        if profile.fits(shapes):
            return index
    given = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
    ranges = " | ".join(p.describe() for p in profiles)
    raise InputMismatch(f"input shapes {given} fit no optimization profile of this engine ({ranges}); "
                        "rebuild with wider ranges (shapes=/dims= at load, or deploykit build --shape)")


__all__ = ["DEFAULT_BATCH_MAX", "DEFAULT_BATCH_OPT", "Profile", "derive", "select"]
