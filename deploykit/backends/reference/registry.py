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

from collections.abc import Sequence
from typing import Any

from . import ops  # noqa: F401  (importing registers every native op in kernels.NATIVE)
from .kernels import NATIVE, Factory, Kernel, Node, register


def native(domain: str, op_type: str, since: int) -> Factory | None:
    return NATIVE.get((domain, op_type, since))


def native_ops() -> list[tuple[str, str, int]]:
    """Every (domain, op_type, since_version) with a native implementation."""
    return sorted(NATIVE)


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


__all__ = ["Factory", "Kernel", "Node", "delegate", "native", "native_ops", "reference_class", "register",
           "schema_since"]
