"""Inputs made up from a model's TensorSpecs, for benchmarking and tuning when no data is given.

Shapes: a dynamic first dimension is the batch; any other dynamic dimension comes from the
caller's ``dims`` map (by symbol, e.g. ``{"seq": 128}``) or ``shapes`` map (by input, e.g.
``{"x": (1, 3, 320, 480)}``), else :data:`DEFAULT_DIM`. Values: floats uniform in [0, 1); integers
in ``value_ranges`` when given, else inside the range of the ``Gather`` table they index when the
ONNX graph says so (token ids stay in the vocabulary), else over the whole type for quantized
tensors, else in [0, 2); booleans at random.

The result says whether the data may not be representative (a dimension guessed, an integer
range guessed, value-dependent operators in the graph) and why: latency measured on made-up
data is only as good as those guesses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputMismatch, InvalidArgument
from .spec import Dim, TensorSpec, dtype_name

if TYPE_CHECKING:
    import onnx

#: Size given to a dynamic non-batch dimension that neither ``dims`` nor ``shapes`` sizes.
DEFAULT_DIM = 224
#: Batch size used when the batch dimension is dynamic and no batch is asked for.
DEFAULT_BATCH = 1
#: Integers drawn when nothing says what range keeps the model valid: 0 and 1 are valid indices,
#: mask values and flags for almost any model.
DEFAULT_INT_RANGE = (0, 2)
#: Operators whose work depends on the values flowing in (how many boxes survive, which branch
#: runs, how many loop turns): random data may time them very differently from real data.
VALUE_DEPENDENT_OPS = frozenset({"NonMaxSuppression", "NonZero", "If", "Loop", "Scan", "TopK",
                                 "Unique", "Compress", "RoiAlign"})

#: Made-up inputs larger than this (bytes, all inputs of one call) are refused before allocating.
MAX_BYTES = 4 * 2**30
#: ``value_ranges`` entries: a constant, or ``(low, high)`` — high exclusive for integers.
ValueRange = float | int | tuple[float, float]


@dataclass(frozen=True)
class MadeUpArgs:
    """``shapes``, ``dims`` and ``value_ranges`` as checked by :func:`check_made_up` (None: not given)."""

    shapes: dict[str, tuple[int, ...]] | None = None
    dims: dict[str, int] | None = None
    value_ranges: dict[str, ValueRange] | None = None


@dataclass
class Synthesized:
    """Made-up feeds and an honest note on how far they can be trusted."""

    feeds: dict[str, np.ndarray]
    #: False when a guess (shape, value range, value-dependent graph) may change the timing.
    representative: bool
    #: One line per guess or caveat, for the user.
    notes: list[str] = field(default_factory=list)


# -- the caller's shapes, dims and value_ranges ---------------------------------------------------
def check_made_up(specs: Sequence[TensorSpec] | None, shapes: Any = None, dims: Any = None,
                  value_ranges: Any = None) -> MadeUpArgs:
    """Check what shapes made-up inputs; ``InvalidArgument`` naming the argument and the entry.

    Without ``specs`` only the types are checked (before a model is opened); with the model's input
    specs also that ``shapes`` and ``value_ranges`` name its inputs, ``dims`` the symbols of its
    input shapes, each shape fits its input (rank, fixed dimensions) and each value range its dtype.
    Returns the values normalised (shapes as tuples of ints, ranges as ``(low, high)`` tuples).
    """
    checked = MadeUpArgs(_check_shapes(shapes), _check_dims(dims), _check_value_ranges(value_ranges))
    if specs is not None:
        _check_against(list(specs), checked)
    return checked


def _names_map(value: Any, what: str, form: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"{what} must be a dict {form}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def _check_shapes(shapes: Any) -> dict[str, tuple[int, ...]] | None:
    given = _names_map(shapes, "shapes", "input name -> shape, e.g. {'x': (1, 3, 224, 224)}")
    if given is None:
        return None
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in given.items():
        ok = isinstance(shape, (Sequence, np.ndarray)) and not isinstance(shape, (str, bytes)) \
            and all(_is_int(d) and d >= 1 for d in shape)
        if not ok:
            raise InvalidArgument(f"shapes[{name!r}] must be a sequence of ints >= 1, e.g. "
                                  f"(1, 3, 224, 224), got {shape!r}")
        out[name] = tuple(int(d) for d in shape)
    return out


def _check_dims(dims: Any) -> dict[str, int] | None:
    given = _names_map(dims, "dims", "dimension symbol -> size, e.g. {'seq': 128}")
    if given is None:
        return None
    for name, size in given.items():
        if not (_is_int(size) and size >= 1):
            raise InvalidArgument(f"dims[{name!r}] must be an int >= 1, got {size!r}")
    return {k: int(v) for k, v in given.items()}


def _check_value_ranges(value_ranges: Any) -> dict[str, ValueRange] | None:
    given = _names_map(value_ranges, "value_ranges",
                       "input name -> (low, high) or a constant, e.g. {'ids': (0, 30522)}")
    if given is None:
        return None
    out: dict[str, ValueRange] = {}
    for name, value in given.items():
        if _is_number(value):
            out[name] = value
        elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value)):
            if not value[1] > value[0]:
                raise InvalidArgument(f"value_ranges[{name!r}]: range {tuple(value)} is empty; give "
                                      "(low, high) with high > low (high exclusive), or one number")
            out[name] = (value[0], value[1])
        else:
            raise InvalidArgument(f"value_ranges[{name!r}] must be (low, high) or one number, "
                                  f"got {value!r}")
    return out


def _check_against(specs: list[TensorSpec], given: MadeUpArgs) -> None:
    """The names in ``given`` are the model's; each shape and value range fits its input."""
    by_name = {s.name: s for s in specs}
    for what, names in (("shapes", given.shapes), ("value_ranges", given.value_ranges)):
        unknown = sorted(set(names or {}) - set(by_name))
        if unknown:
            raise InvalidArgument(f"{what} names {', '.join(map(repr, unknown))}, which the model has "
                                  f"no input of; its inputs: {', '.join(by_name) or '(none)'}")
    symbols: dict[str, str] = {}  # symbol -> the first input that has it, in the model's order
    for s in specs:
        for d in s.shape or ():
            if isinstance(d, str):
                symbols.setdefault(d, s.name)
    unknown = sorted(set(given.dims or {}) - set(symbols))
    if unknown:
        have = ", ".join(f"{d!r} ({name})" for d, name in symbols.items()) or "(none)"
        raise InvalidArgument(f"dims names {', '.join(map(repr, unknown))}, which no input shape of "
                              f"the model has; its named dimensions: {have}")
    for name, shape in (given.shapes or {}).items():
        _check_shape_fits(by_name[name], shape)
    for name, value in (given.value_ranges or {}).items():
        _check_range_fits(by_name[name], value)


def _check_shape_fits(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    if spec.shape is None:
        return
    sig = f"{dtype_name(spec.dtype)}{spec.shape_str()}"
    if len(shape) != len(spec.shape):
        raise InvalidArgument(f"shapes[{spec.name!r}]: {shape} does not fit input {spec.name!r} "
                              f"{sig} (rank {len(spec.shape)})")
    for axis, (want, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int) and want != got:
            raise InvalidArgument(f"shapes[{spec.name!r}]: {shape} does not fit input {spec.name!r} "
                                  f"{sig}: dimension {axis} must be {want}")


def _check_range_fits(spec: TensorSpec, value: ValueRange) -> None:
    kind = spec.dtype.kind
    head = f"value_ranges[{spec.name!r}]: input {spec.name!r} is {dtype_name(spec.dtype)}"
    values = list(value) if isinstance(value, tuple) else [value]
    if isinstance(value, tuple) and kind not in "iuf":
        raise InvalidArgument(f"{head}; a (low, high) range needs an int or float input (give one "
                              "number for a constant, or leave it out)")
    if kind not in "biuf":
        raise InvalidArgument(f"{head}; only numeric inputs take a value (leave it out)")
    if kind == "b" and value not in (0, 1):
        raise InvalidArgument(f"{head}; give 0 or 1 (False or True), got {value!r}")
    if kind == "f":
        top = float(np.finfo(spec.dtype).max)
        if any(abs(float(v)) > top for v in values):
            raise InvalidArgument(f"{head}; {value!r} does not fit it (at most {top:g} in size)")
    if kind in "iu":
        if not all(float(v).is_integer() for v in values):
            raise InvalidArgument(f"{head}; give integers, got {value!r}")
        info = np.iinfo(spec.dtype)
        top = values[1] - 1 if isinstance(value, tuple) else values[0]
        if values[0] < info.min or top > info.max:
            raise InvalidArgument(f"{head}; {value!r} does not fit it ({int(info.min)} to {int(info.max)}"
                                  + (", high exclusive)" if isinstance(value, tuple) else ")"))


def batch_dims(specs: Sequence[TensorSpec]) -> tuple[bool, int | None]:
    """(is the batch dimension dynamic?, its fixed size if not) over tensor inputs of rank >= 1.

    The batch is the first dimension; it is dynamic when any input leaves it open. A model whose
    inputs all fix it (e.g. ``[1,16,96]``) has a fixed batch; with no ranked input there is none.
    """
    firsts = [s.shape[0] for s in specs if s.kind == "tensor" and s.shape]
    fixed = [d for d in firsts if isinstance(d, int)]
    if not firsts:
        return False, None
    if len(fixed) < len(firsts):
        return True, None
    return False, fixed[0]


def resolve_shapes(specs: Sequence[TensorSpec], *, batch: int | None = None,
                   shapes: Mapping[str, Sequence[int]] | None = None,
                   dims: Mapping[str, int] | None = None) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Concrete shape per tensor input, and a note per dimension that had to be guessed.

    ``batch`` replaces a dynamic first dimension (also in a shape from ``shapes``); a symbolic
    dimension gets one size across all inputs. ``shapes`` and ``dims`` are checked as by
    :func:`check_made_up` (``InvalidArgument``); an input of unknown rank with no shape given is an
    ``InputMismatch`` (the model's inputs cannot be made up without it).
    """
    return _resolve(specs, batch, check_made_up(specs, shapes, dims))


def _resolve(specs: Sequence[TensorSpec], batch: int | None,
             given: MadeUpArgs) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    if batch is not None and not (_is_int(batch) and batch >= 1):
        raise InvalidArgument(f"batch must be an int >= 1, got {batch!r}")
    if batch is not None:  # the batch size sets a dynamic first dimension, whatever dims says
        for s in specs:
            first = s.shape[0] if s.kind == "tensor" and s.shape else None
            if isinstance(first, str) and first in (given.dims or {}):
                raise InvalidArgument(f"dims[{first!r}]: {first!r} is the batch (first) dimension of "
                                      f"input {s.name!r}, set by the batch size (batch_sizes=); do not "
                                      "give it in dims")
    shapes = given.shapes or {}
    symbols: dict[str, int] = dict(given.dims or {})
    guessed: list[str] = []
    out: dict[str, tuple[int, ...]] = {}
    # batch symbols first, so that a symbol used as a batch elsewhere gets the batch size
    if batch is not None:
        for s in specs:
            if s.kind == "tensor" and s.shape and isinstance(s.shape[0], str):
                symbols.setdefault(s.shape[0], batch)
    for s in specs:
        if s.kind != "tensor":
            continue
        shape = shapes.get(s.name)
        if shape is not None:
            if batch is not None and shape and s.shape is not None and not isinstance(s.shape[0], int):
                shape = (batch, *shape[1:])
            out[s.name] = shape
            for d, size in zip(s.shape or (), shape):
                if isinstance(d, str):
                    symbols.setdefault(d, size)
            continue
        if s.shape is None:
            raise InputMismatch(f"input {s.name!r} declares no rank; give its shape, e.g. "
                                f"shapes={{{s.name!r}: (1, 3, 224, 224)}}")
        out[s.name] = tuple(_size(s, axis, d, batch, symbols, guessed) for axis, d in enumerate(s.shape))
    return out, guessed


def _size(spec: TensorSpec, axis: int, d: Dim, batch: int | None, symbols: dict[str, int],
          guessed: list[str]) -> int:
    if isinstance(d, int):
        return d
    if axis == 0:
        size = batch if batch is not None else symbols.get(d, DEFAULT_BATCH) if isinstance(d, str) \
            else DEFAULT_BATCH
        if isinstance(d, str):
            symbols.setdefault(d, size)
        return size
    if isinstance(d, str):
        if d not in symbols:
            symbols[d] = DEFAULT_DIM
            guessed.append(f"dimension {d!r} of input {spec.name!r} set to {DEFAULT_DIM} (default); "
                           f"give dims={{{d!r}: N}} or shapes= for the size you deploy")
        return symbols[d]
    guessed.append(f"dimension {axis} of input {spec.name!r} set to {DEFAULT_DIM} (default); give "
                   f"shapes={{{spec.name!r}: (...)}} for the size you deploy")
    return DEFAULT_DIM


def index_ranges(proto: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Integer graph inputs used directly as ``Gather`` indices into a constant table, mapped to
    the valid range [0, table size along the gathered axis) — e.g. token ids -> the vocabulary."""
    graph = proto.graph
    tables = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tables[node.output[0]] = tuple(node.attribute[0].t.dims)
    inputs = {i.name for i in graph.input} - set(tables)
    ranges: dict[str, tuple[int, int]] = {}
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in inputs:
            continue
        table = tables.get(node.input[0])
        if not table:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        size = table[axis]
        name = node.input[1]
        lo, hi = ranges.get(name, (0, size))
        ranges[name] = (lo, min(hi, size))  # used by several tables: valid for all of them
    return ranges


def value_dependent_ops(proto: onnx.ModelProto) -> list[str]:
    """Operators in the graph (subgraphs included) whose cost depends on the input values."""
    found: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if node.op_type in VALUE_DEPENDENT_OPS:
                found.add(node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(proto.graph)
    return sorted(found)


def synthesize(specs: Sequence[TensorSpec], *, batch: int | None = None,
               shapes: Mapping[str, Sequence[int]] | None = None,
               dims: Mapping[str, int] | None = None,
               value_ranges: Mapping[str, ValueRange] | None = None,
               proto: onnx.ModelProto | None = None, seed: int = 0) -> Synthesized:
    """Feeds for ``specs`` (see the module docstring for the rules) and how far to trust them.

    ``proto`` (the ONNX graph, when there is one) lets integer ranges be read from the graph
    and value-dependent operators be found; without it the data is flagged as unchecked.
    ``shapes``, ``dims`` and ``value_ranges`` are checked by :func:`check_made_up`.
    """
    given = check_made_up(specs, shapes, dims, value_ranges)
    value_ranges = given.value_ranges or {}
    others = [s for s in specs if s.kind != "tensor"]
    if others:
        raise InputMismatch(f"cannot make up {others[0].kind} input {others[0].name!r}; pass real "
                            "inputs (inputs=...)")
    resolved, notes = _resolve(specs, batch, given)
    _check_size(specs, resolved)
    representative = not notes
    from_graph = index_ranges(proto) if proto is not None else {}
    if proto is not None:
        ops = value_dependent_ops(proto)
        if ops:
            representative = False
            notes.append(f"the graph has value-dependent operators ({', '.join(ops)}): random "
                         "values may time them unlike real data; pass inputs= for real numbers")
    else:
        representative = False
        notes.append("the model's graph was not inspected (not ONNX): integer ranges and "
                     "value-dependent operators unknown")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        shape = resolved[s.name]
        feeds[s.name], note = _values(s, shape, value_ranges.get(s.name), from_graph.get(s.name), rng)
        if note:
            representative = False
            notes.append(note)
    return Synthesized(feeds, representative, notes)


def _check_size(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse made-up inputs over :data:`MAX_BYTES` before allocating them."""
    sizes = {s.name: math.prod(shapes[s.name]) * s.dtype.itemsize for s in specs if s.name in shapes}
    total = sum(sizes.values())
    if total > MAX_BYTES:
        shown = ", ".join(f"{n}: {list(shapes[n])}" for n in sizes)
        raise InvalidArgument(f"made-up inputs of {total / 2**30:.1f} GiB ({shown}) are more than "
                              f"deploykit makes up ({MAX_BYTES / 2**30:g} GiB); give smaller shapes=, "
                              "dims= or batch sizes, or real inputs (inputs=...)")


def _values(spec: TensorSpec, shape: tuple[int, ...], given: ValueRange | None,
            graph_range: tuple[int, int] | None, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    dtype = spec.dtype
    label = f"input {spec.name!r} ({dtype_name(dtype)})"
    if given is not None and not isinstance(given, tuple):  # a constant (check_made_up: it fits)
        return np.full(shape, given, dtype=dtype), ""
    lo_hi = given
    if dtype.kind == "f":
        lo, hi = lo_hi if lo_hi is not None else (0.0, 1.0)
        return rng.uniform(lo, hi, shape).astype(dtype), ""
    if dtype.kind in "iu":
        note = ""
        if lo_hi is None:
            lo_hi = graph_range
        if lo_hi is None and getattr(spec, "quantization", None) is not None:
            info = np.iinfo(dtype)  # quantized values: every integer of the type means a number
            lo_hi = (int(info.min), int(info.max) + 1)
        if lo_hi is None:
            lo_hi = DEFAULT_INT_RANGE
            note = (f"{label}: values drawn from {list(range(*DEFAULT_INT_RANGE))} (nothing says "
                    f"what range it needs); give value_ranges={{{spec.name!r}: (low, high)}}")
        lo, hi = int(lo_hi[0]), int(lo_hi[1])
        return rng.integers(lo, hi, shape, dtype=dtype), note
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool), ""
    if dtype == np.dtype(object):
        return np.full(shape, "deploykit", dtype=object), f"{label}: filled with placeholder text"
    raise InputMismatch(f"{label}: cannot make up values of this dtype; pass real inputs (inputs=...)")
