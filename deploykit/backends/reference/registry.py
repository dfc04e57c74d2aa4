"""Operator registry of the NumPy backend, keyed by (domain, op_type, since_version).

``since_version`` is the ONNX schema version an implementation was written for: a model whose
opset selects another schema version of that op does not silently get this implementation.

To add an operator:

1. write a factory in ``ops/<family>.py`` that takes the :class:`Node` (attributes decoded,
   constant inputs known at load time) and returns a kernel ``kernel(*inputs) -> array | tuple``;
2. decorate it with ``@register("OpType", since, ...)`` listing every schema version it handles.

Ops without a native implementation are delegated to ``onnx.reference``'s implementation of that
op (a well-kept library) — see :func:`delegate` and ``docs/reference-backend.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Kernel = Callable[..., Any]


@dataclass
class Node:
    """What an op factory sees of one graph node, decoded once at load time."""

    op_type: str
    domain: str
    since: int  # schema since_version selected by the model's opset
    opset: int  # the model's opset version for this domain
    name: str
    attrs: dict[str, Any]
    n_inputs: int
    n_outputs: int
    consts: tuple[np.ndarray | None, ...]  # constant value of each input when known at load time
    proto: Any = field(repr=False, default=None)
    #: compiles a subgraph attribute into a runnable ``CompiledGraph`` (set by the graph compiler)
    compile_subgraph: Callable[[Any], Any] | None = field(repr=False, default=None)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def const(self, index: int) -> np.ndarray | None:
        return self.consts[index] if index < len(self.consts) else None


Factory = Callable[[Node], Kernel]

_NATIVE: dict[tuple[str, str, int], Factory] = {}
_loaded = False


def register(op_type: str, *since: int, domain: str = "") -> Callable[[Factory], Factory]:
    """Register ``factory`` for ``op_type`` at each schema ``since`` version listed."""
    if not since:
        raise ValueError(f"register({op_type!r}) needs at least one since_version")

    def deco(factory: Factory) -> Factory:
        for version in since:
            key = (domain, op_type, version)
            if key in _NATIVE:
                raise ValueError(f"{key} registered twice")
            _NATIVE[key] = factory
        return factory

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        from . import ops  # noqa: F401  (importing registers every native op)

        _loaded = True


def native(domain: str, op_type: str, since: int) -> Factory | None:
    _ensure_loaded()
    return _NATIVE.get((domain, op_type, since))


def native_ops() -> list[tuple[str, str, int]]:
    """Every (domain, op_type, since_version) with a native implementation."""
    _ensure_loaded()
    return sorted(_NATIVE)


def schema_since(domain: str, op_type: str, opset: int) -> int | None:
    """The since_version of the schema that ``opset`` selects, or None if ONNX has no such op."""
    import onnx.defs

    try:
        return int(onnx.defs.get_schema(op_type, opset, domain).since_version)
    except onnx.defs.SchemaError:
        return None


#: ops that must never be delegated (onnx.reference is wrong for inference, or they need the
#: graph executor itself) — each has a native implementation.
NEVER_DELEGATE = frozenset({("", "BatchNormalization"), ("", "If"), ("", "Loop"), ("", "Scan")})


def delegate(node: Node, opsets: dict[str, int], input_types: Sequence[Any] | None) -> Kernel:
    """A kernel running onnx.reference's implementation of ``node``; raises NotImplementedError
    (or onnx.reference's RuntimeContextError) when onnx.reference has none."""
    from onnx.reference import ReferenceEvaluator

    domain, op_type, version = node.domain, node.op_type, opsets.get(node.domain, node.opset)
    cls = reference_class(domain, op_type, version, node.proto,
                          None if input_types is None else list(input_types))
    run_params = {"log": lambda *a: None, "opsets": dict(opsets), "verbose": 0, "new_ops": None,
                  "existing_functions": {}, "evaluator_cls": ReferenceEvaluator}
    inst = cls(node.proto, run_params)
    if inst.need_context():
        raise NotImplementedError(f"{op_type} needs a graph context")
    run = inst.run

    def kernel(*inputs: Any) -> Any:
        return run(*inputs)

    return kernel


def reference_class(domain: str, op_type: str, version: int, node: Any = None,
                    input_types: list[Any] | None = None) -> Any:
    """onnx.reference's implementation of an op (a class, or a factory for function-defined ops).
    Raises NotImplementedError when there is none, RuntimeContextError when it needs input types."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import RuntimeContextError

    if domain == "":
        from onnx.reference.ops import load_op

        try:
            return load_op(domain, op_type, version, evaluator_cls=ReferenceEvaluator)
        except RuntimeContextError:
            if node is None or input_types is None or any(t is None for t in input_types):
                raise
            return load_op(domain, op_type, version, node=node, input_types=input_types,
                           evaluator_cls=ReferenceEvaluator)
    if domain == "ai.onnx.ml":
        from onnx.reference.ops.aionnxml import load_op as load_ml

        return load_ml(domain, op_type, version)
    if domain == "ai.onnx.preview":
        from onnx.reference.ops.aionnx_preview import load_op as load_preview

        return load_preview(domain, op_type, version)
    if domain == "ai.onnx.preview.training":
        from onnx.reference.ops.aionnx_preview_training import load_op as load_training

        return load_training(domain, op_type, version)
    raise NotImplementedError(f"onnx.reference has no domain {domain!r}")
