"""Reading ONNX protos for the NumPy backend: attribute values, sparse initializers, the names a
subgraph reads from its enclosing scope, and element types numpy has no native dtype for."""

from __future__ import annotations

from typing import Any

import numpy as np

#: ONNX element types numpy has no native dtype for (bfloat16, float8 variants, 4-bit ints, ...)
_EXOTIC_MIN = 16


def attr_value(attr: Any) -> Any:
    """An AttributeProto's value as plain Python/numpy: tensors as arrays, strings decoded."""
    from onnx import AttributeProto, helper, numpy_helper

    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type == AttributeProto.TENSORS:
        return [numpy_helper.to_array(t) for t in attr.tensors]
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if attr.type == AttributeProto.STRINGS:
        return [v.decode("utf-8") for v in value]
    if attr.type in (AttributeProto.INTS, AttributeProto.FLOATS):
        return list(value)
    return value


def holds_graphs(attr: Any) -> bool:
    """True for a GRAPH or GRAPHS attribute (an If/Loop/Scan body)."""
    from onnx import AttributeProto

    return bool(attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS))


def subgraph_reads(attr: Any) -> set[str]:
    """Names the subgraph(s) of a GRAPH/GRAPHS attribute read from the enclosing scope."""
    from onnx import AttributeProto

    if attr.type == AttributeProto.GRAPH:
        return graph_free_names(attr.g)
    if attr.type == AttributeProto.GRAPHS and attr.graphs:
        return set().union(*(graph_free_names(g) for g in attr.graphs))
    return set()


def graph_free_names(graph: Any) -> set[str]:
    """Names a graph (with its nested subgraphs) reads but does not define itself."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    reads = {o.name for o in graph.output}
    for node in graph.node:
        defined.update(o for o in node.output if o)
        reads.update(n for n in node.input if n)
        for attr in node.attribute:
            reads |= subgraph_reads(attr)
    return reads - defined


def dense(sparse: Any) -> np.ndarray:
    """A SparseTensorProto as a dense array (indices linearised [NNZ] or per-axis [NNZ, rank])."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    out = np.zeros(tuple(sparse.dims), dtype=values.dtype)
    if indices.ndim == 2:
        out[tuple(indices.T)] = values
    else:
        out.reshape(-1)[indices] = values
    return out


def uses_exotic_types(graph: Any) -> bool:
    """True when a graph declares or casts to bfloat16/float8/int4-like types, which native
    kernels (written for numpy's own dtypes) do not promise to preserve."""
    values = [*graph.input, *graph.output, *graph.value_info]
    if any(_exotic_type(v.type) for v in values):
        return True
    if any(int(t.data_type) >= _EXOTIC_MIN for t in graph.initializer):
        return True
    return any(_exotic_attribute(attr) for node in graph.node for attr in node.attribute)


def _exotic_type(t: Any) -> bool:
    which = t.WhichOneof("value")
    if which == "tensor_type":
        return int(t.tensor_type.elem_type) >= _EXOTIC_MIN
    if which == "sequence_type":
        return _exotic_type(t.sequence_type.elem_type)
    if which == "optional_type":
        return _exotic_type(t.optional_type.elem_type)
    return False


def _exotic_attribute(attr: Any) -> bool:
    """A Cast-like ``to`` attribute, a tensor attribute or a subgraph using an exotic type."""
    from onnx import AttributeProto

    if attr.name == "to" and attr.type == AttributeProto.INT:
        return bool(attr.i >= _EXOTIC_MIN)
    if attr.type == AttributeProto.TENSOR:
        return bool(attr.t.data_type >= _EXOTIC_MIN)
    if attr.type == AttributeProto.GRAPH:
        return uses_exotic_types(attr.g)
    if attr.type == AttributeProto.GRAPHS:
        return any(uses_exotic_types(g) for g in attr.graphs)
    return False
