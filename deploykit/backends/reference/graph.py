"""Compile an ONNX graph once into a plan of slots and steps, then run it with NumPy.

At load time: names become integer slots, nodes are ordered topologically, every kernel is
built (attributes decoded, constants folded), and each value's last use is known so that
intermediates are freed as soon as no later step needs them. A run is a loop over the steps.
Subgraphs (If/Loop/Scan bodies) are compiled the same way; a name a subgraph uses but does not
define is read from the enclosing scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry
from .registry import Kernel, Node

#: never folded at load time: their output changes from run to run
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                               "RandomUniformLike", "Multinomial", "Bernoulli"})


class UnsupportedOps(Exception):
    """Collected (domain, op_type, version, reason) of every node the backend cannot run."""

    def __init__(self, missing: list[tuple[str, str, int, str]]) -> None:
        self.missing = missing
        super().__init__(", ".join(f"{d or 'ai.onnx'}::{o} (opset {v}: {r})" for d, o, v, r in missing))


@dataclass
class Step:
    kernel: Kernel
    inputs: tuple[int, ...]  # slots; -1 for an omitted optional input
    outputs: tuple[int, ...]  # slots; -1 for an omitted optional output
    free: tuple[int, ...]  # slots whose last use is this step
    outer: tuple[tuple[str, int], ...]  # names the node's subgraphs read from this scope
    label: str


@dataclass
class Plan:
    """A compiled graph: run(inputs, outer) -> outputs, in graph order."""

    input_names: list[str]
    output_names: list[str]
    input_slots: list[int]
    output_slots: list[int]
    template: list[Any]  # constants in place, None elsewhere
    steps: list[Step]
    outer_slots: list[tuple[str, int]] = field(default_factory=list)  # free names of this graph

    @property
    def free_names(self) -> list[str]:
        return [name for name, _ in self.outer_slots]

    def run(self, inputs: Sequence[Any], outer: dict[str, Any] | None = None) -> list[Any]:
        env = self.template.copy()
        for slot, value in zip(self.input_slots, inputs):
            env[slot] = value
        if self.outer_slots:
            assert outer is not None
            for name, slot in self.outer_slots:
                env[slot] = outer[name]
        for step in self.steps:
            args = [env[i] if i >= 0 else None for i in step.inputs]
            try:
                if step.outer:
                    result = step.kernel(*args, outer={n: env[s] for n, s in step.outer})
                else:
                    result = step.kernel(*args)
            except Exception as e:
                raise RuntimeError(f"node {step.label}: {type(e).__name__}: {e}") from e
            outs = step.outputs
            if type(result) is tuple:  # several outputs (a list is one sequence value)
                for slot, value in zip(outs, result):
                    if slot >= 0:
                        env[slot] = value
            else:
                env[outs[0]] = result
            for slot in step.free:
                env[slot] = None
        return [env[s] for s in self.output_slots]


def _attr_value(attr: Any) -> Any:
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


class Compiler:
    """Compiles a model's graphs (main and nested) against one set of opsets."""

    def __init__(self, opsets: dict[str, int], value_types: dict[str, Any] | None = None,
                 fold_constants: bool = True, native: bool = True) -> None:
        self.opsets = opsets
        self.native = native  # False: every op that may be delegated is (exotic dtypes)
        self.value_types = value_types or {}
        self.fold = fold_constants
        self.missing: list[tuple[str, str, int, str]] = []
        self.delegated: set[tuple[str, str, int]] = set()

    def compile(self, graph: Any, outer_scope: frozenset[str] = frozenset(),
                initializers: dict[str, np.ndarray] | None = None) -> Plan:
        from onnx import AttributeProto, numpy_helper

        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        consts: dict[str, np.ndarray] = dict(initializers or {})
        for init in graph.initializer:
            if init.name not in consts:
                consts[init.name] = numpy_helper.to_array(init)
        for sparse in graph.sparse_initializer:
            consts[sparse.values.name] = _dense(sparse)
        inputs = [v.name for v in graph.input]
        defined = set(inputs) | set(consts)
        for node in graph.node:
            defined.update(o for o in node.output if o)

        # topological order (graphs are sorted by spec, but be forgiving)
        ready = set(inputs) | set(consts) | {""}
        pending = list(graph.node)
        order: list[Any] = []
        while pending:
            progressed = []
            rest = []
            for node in pending:
                reads = set(node.input)
                for attr in node.attribute:
                    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                        reads |= {n for n in _subgraph_reads_of(attr) if n in defined}
                if all(n in ready or n not in defined for n in reads):
                    progressed.append(node)
                    ready.update(node.output)
                else:
                    rest.append(node)
            if not progressed:
                cyc = ", ".join(n.name or n.op_type for n in rest[:5])
                raise ValueError(f"the graph has a cycle or an undefined input near: {cyc}")
            order += progressed
            pending = rest

        free_names: list[str] = []
        free_set: set[str] = set()

        def read(name: str) -> int:
            if not name:
                return -1
            if name not in defined:
                if name not in outer_scope:
                    raise ValueError(f"tensor {name!r} is used but never defined")
                if name not in free_set:
                    free_set.add(name)
                    free_names.append(name)
            return slot(name)

        input_slots = [slot(n) for n in inputs]
        steps: list[Step] = []
        const_values: dict[int, Any] = {}
        for name, value in consts.items():
            const_values[slot(name)] = value
        scope = outer_scope | frozenset(defined)

        for node in order:
            in_slots = tuple(read(n) for n in node.input)
            node_consts = tuple(
                const_values.get(s) if s >= 0 else None for s in in_slots
            )
            sub_free: list[str] = []
            info = self._node_info(node, node_consts, scope)
            kernel = self._kernel(info)
            if kernel is None:
                continue
            subgraphs = [a for a in node.attribute
                         if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)]
            for attr in subgraphs:
                for name in sorted(_subgraph_reads_of(attr)):
                    if name in scope and name not in sub_free:
                        sub_free.append(name)
            outer_refs = tuple((n, read(n)) for n in sub_free if n in defined or n in outer_scope)
            out_slots = tuple(slot(o) if o else -1 for o in node.output)
            # a body may hold random operators: nodes with subgraphs are never folded
            foldable = (self.fold and not subgraphs and node.op_type not in _NONDETERMINISTIC
                        and all(c is not None or s < 0 for c, s in zip(node_consts, in_slots)))
            if foldable:
                try:
                    result = kernel(*node_consts)
                except Exception:  # leave it to run time, where the error has context
                    foldable = False
                else:
                    values = result if type(result) is tuple else (result,)
                    for s, v in zip(out_slots, values):
                        if s >= 0:
                            const_values[s] = v
                    continue
            label = f"{node.op_type}({node.name or ', '.join(node.output)})"
            steps.append(Step(kernel, in_slots, out_slots, (), outer_refs, label))

        output_names = [v.name for v in graph.output]
        output_slots = [read(n) for n in output_names]
        # lifetimes: free each non-constant slot after its last reader
        keep = set(output_slots) | set(const_values)
        last: dict[int, int] = {}
        for i, step in enumerate(steps):
            for s in step.inputs:
                if s >= 0:
                    last[s] = i
            for _, s in step.outer:
                last[s] = i
        frees: dict[int, list[int]] = {}
        for s, i in last.items():
            if s not in keep:
                frees.setdefault(i, []).append(s)
        for i, step in enumerate(steps):
            step.free = tuple(frees.get(i, ()))
        # outputs written but never read are dropped right away
        read_slots = set(last) | keep
        for step in steps:
            step.free = step.free + tuple(s for s in step.outputs if s >= 0 and s not in read_slots)

        template: list[Any] = [None] * len(slots)
        for s, v in const_values.items():
            template[s] = v
        return Plan(inputs, output_names, input_slots, output_slots, template, steps,
                    [(n, slots[n]) for n in free_names])

    def _node_info(self, node: Any, consts: tuple[Any, ...], scope: frozenset[str]) -> Node:
        domain = node.domain or ""
        if domain == "ai.onnx":
            domain = ""
        opset = self.opsets.get(domain, 1)
        since = registry.schema_since(domain, node.op_type, opset) or opset
        attrs = {a.name: _attr_value(a) for a in node.attribute}
        return Node(node.op_type, domain, since, opset, node.name, attrs, len(node.input),
                    len(node.output), consts, node,
                    compile_subgraph=lambda g: self.compile(g, scope))

    def _kernel(self, info: Node) -> Kernel | None:
        key = (info.domain, info.op_type, info.since)
        use_native = self.native or (info.domain, info.op_type) in registry.NEVER_DELEGATE
        factory = registry.native(*key) if use_native else None
        if factory is not None:
            try:
                return factory(info)
            except NotImplementedError as e:
                if (info.domain, info.op_type) in registry.NEVER_DELEGATE:
                    self.missing.append((info.domain, info.op_type, info.opset, str(e)))
                    return None
        if (info.domain, info.op_type) in registry.NEVER_DELEGATE:
            self.missing.append((info.domain, info.op_type, info.opset,
                                 "no implementation for this version"))
            return None
        types = [self.value_types.get(n) for n in info.proto.input]
        try:
            kernel = registry.delegate(info, self.opsets, types)
        except Exception as e:  # onnx.reference has no implementation (or cannot build one)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.missing.append((info.domain, info.op_type, info.opset, first[:160]))
            return None
        self.delegated.add(key)
        return kernel


def _subgraph_reads_of(attr: Any) -> set[str]:
    """Names the subgraph(s) of a GRAPH/GRAPHS attribute read from the enclosing scope."""
    from onnx import AttributeProto

    if attr.type == AttributeProto.GRAPH:
        return _graph_free(attr.g)
    return set().union(*(_graph_free(g) for g in attr.graphs)) if attr.graphs else set()


def _graph_free(graph: Any) -> set[str]:
    """Names a graph (with its nested subgraphs) reads but does not define itself."""
    from onnx import AttributeProto

    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    reads = {o.name for o in graph.output}
    for node in graph.node:
        defined.update(o for o in node.output if o)
        reads.update(n for n in node.input if n)
        for attr in node.attribute:
            if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                reads |= _subgraph_reads_of(attr)
    return reads - defined


def _dense(sparse: Any) -> np.ndarray:
    """A SparseTensorProto as a dense array (indices linearised [NNZ] or per-axis [NNZ, rank])."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(tuple(sparse.dims), dtype=values.dtype)
    if indices.ndim == 2:
        dense[tuple(indices.T)] = values
    else:
        dense.reshape(-1)[indices] = values
    return dense


#: ONNX element types numpy has no native dtype for (bfloat16, float8 variants, 4-bit ints, ...)
_EXOTIC_MIN = 16


def uses_exotic_types(graph: Any) -> bool:
    """True when a graph declares or casts to bfloat16/float8/int4-like types, which native
    kernels (written for numpy's own dtypes) do not promise to preserve."""
    from onnx import AttributeProto

    def exotic_type(t: Any) -> bool:
        which = t.WhichOneof("value")
        if which == "tensor_type":
            return int(t.tensor_type.elem_type) >= _EXOTIC_MIN
        if which == "sequence_type":
            return exotic_type(t.sequence_type.elem_type)
        if which == "optional_type":
            return exotic_type(t.optional_type.elem_type)
        return False

    values = [*graph.input, *graph.output, *graph.value_info]
    if any(exotic_type(v.type) for v in values):
        return True
    if any(int(t.data_type) >= _EXOTIC_MIN for t in graph.initializer):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "to" and attr.type == AttributeProto.INT and attr.i >= _EXOTIC_MIN:
                return True
            if attr.type == AttributeProto.TENSOR and attr.t.data_type >= _EXOTIC_MIN:
                return True
            if attr.type == AttributeProto.GRAPH and uses_exotic_types(attr.g):
                return True
            if attr.type == AttributeProto.GRAPHS and any(uses_exotic_types(g) for g in attr.graphs):
                return True
    return False
