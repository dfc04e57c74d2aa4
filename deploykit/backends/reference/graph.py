"""Compile an ONNX graph once into slots and steps, then run it with NumPy.

At load time: names become integer slots, nodes are ordered topologically, every kernel is
built (attributes decoded, constants folded), and each value's last use is known so that
intermediates are freed as soon as no later step needs them. A run is a loop over the steps.
Subgraphs (If/Loop/Scan bodies) are compiled the same way; a name a subgraph uses but does not
define is read from the enclosing scope.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import first_line
from . import registry
from .protos import attr_value, dense, holds_graphs, subgraph_reads
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
    """One node to run: its kernel, where it reads and writes, what it frees afterwards."""

    kernel: Kernel
    inputs: tuple[int, ...]  # slots; -1 for an omitted optional input
    outputs: tuple[int, ...]  # slots; -1 for an omitted optional output
    free: tuple[int, ...]  # slots whose last use is this step
    outer: tuple[tuple[str, int], ...]  # names the node's subgraphs read from this scope
    label: str


@dataclass
class CompiledGraph:
    """A graph compiled to slots and steps: ``run(inputs, outer) -> outputs``, in graph order."""

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


class _Slots:
    """Tensor names of one graph -> integer slots; names read from the enclosing scope are
    collected, in order of first use, as the graph's free names."""

    def __init__(self, defined: set[str], outer_scope: frozenset[str]) -> None:
        self.index: dict[str, int] = {}
        self.defined = defined
        self.outer_scope = outer_scope
        self.free_names: list[str] = []

    def slot(self, name: str) -> int:
        if name not in self.index:
            self.index[name] = len(self.index)
        return self.index[name]

    def read(self, name: str) -> int:
        """The slot a node reads ``name`` from (-1: an omitted optional input)."""
        if not name:
            return -1
        if name not in self.defined:
            if name not in self.outer_scope:
                raise ValueError(f"tensor {name!r} is used but never defined")
            if name not in self.free_names:
                self.free_names.append(name)
        return self.slot(name)


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
                initializers: dict[str, np.ndarray] | None = None) -> CompiledGraph:
        """Slots, ordered steps (constant nodes folded away) and lifetimes of ``graph``; names it
        does not define are read from ``outer_scope``."""
        consts = _constants(graph, initializers)
        inputs = [v.name for v in graph.input]
        defined = set(inputs) | set(consts) | {o for node in graph.node for o in node.output if o}
        order = _topological_order(graph.node, set(inputs) | set(consts), defined)
        slots = _Slots(defined, outer_scope)
        input_slots = [slots.slot(n) for n in inputs]
        values = {slots.slot(name): value for name, value in consts.items()}
        scope = outer_scope | frozenset(defined)
        steps = [step for node in order if (step := self._step(node, slots, values, scope)) is not None]
        output_names = [v.name for v in graph.output]
        output_slots = [slots.read(n) for n in output_names]
        _set_lifetimes(steps, keep=set(output_slots) | set(values))
        template: list[Any] = [None] * len(slots.index)
        for slot, value in values.items():
            template[slot] = value
        return CompiledGraph(inputs, output_names, input_slots, output_slots, template, steps,
                             [(n, slots.index[n]) for n in slots.free_names])

    def _step(self, node: Any, slots: _Slots, values: dict[int, Any],
              scope: frozenset[str]) -> Step | None:
        """The step that runs ``node``; None when it was folded into ``values`` (its outputs are
        constants now) or cannot be built (recorded in ``self.missing``)."""
        in_slots = tuple(slots.read(n) for n in node.input)
        node_consts = tuple(values.get(s) if s >= 0 else None for s in in_slots)
        kernel = self._kernel(self._node_info(node, node_consts, scope))
        if kernel is None:
            return None
        subgraphs = [a for a in node.attribute if holds_graphs(a)]
        outer_names: list[str] = []
        for attr in subgraphs:
            outer_names += [n for n in sorted(subgraph_reads(attr)) if n in scope and n not in outer_names]
        outer_refs = tuple((n, slots.read(n)) for n in outer_names)
        out_slots = tuple(slots.slot(o) if o else -1 for o in node.output)
        # a body may hold random operators: nodes with subgraphs are never folded
        foldable = (self.fold and not subgraphs and node.op_type not in _NONDETERMINISTIC
                    and all(c is not None or s < 0 for c, s in zip(node_consts, in_slots)))
        if foldable and _fold(kernel, node_consts, out_slots, values):
            return None
        label = f"{node.op_type}({node.name or ', '.join(node.output)})"
        return Step(kernel, in_slots, out_slots, (), outer_refs, label)

    def _node_info(self, node: Any, consts: tuple[Any, ...], scope: frozenset[str]) -> Node:
        domain = node.domain or ""
        if domain == "ai.onnx":
            domain = ""
        opset = self.opsets.get(domain, 1)
        since = registry.schema_since(domain, node.op_type, opset) or opset
        attrs = {a.name: attr_value(a) for a in node.attribute}
        return Node(node.op_type, domain, since, opset, node.name, attrs, len(node.input),
                    len(node.output), consts, node,
                    compile_subgraph=lambda g: self.compile(g, scope))

    def _kernel(self, info: Node) -> Kernel | None:
        """The native kernel for ``info``, else onnx.reference's; None (and the reason recorded
        in ``self.missing``) when neither can run it."""
        key = (info.domain, info.op_type, info.since)
        never_delegate = (info.domain, info.op_type) in registry.NEVER_DELEGATE
        factory = registry.native(*key) if self.native or never_delegate else None
        if factory is not None:
            try:
                return factory(info)
            except NotImplementedError as e:
                if never_delegate:
                    self.missing.append((info.domain, info.op_type, info.opset, str(e)))
                    return None
        if never_delegate:
            self.missing.append((info.domain, info.op_type, info.opset,
                                 "no implementation for this version"))
            return None
        types = [self.value_types.get(n) for n in info.proto.input]
        try:
            kernel = registry.delegate(info, self.opsets, types)
        except Exception as e:  # onnx.reference has no implementation (or cannot build one)
            self.missing.append((info.domain, info.op_type, info.opset, first_line(e)[:160]))
            return None
        self.delegated.add(key)
        return kernel


def _constants(graph: Any, initializers: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The graph's initializers (dense and sparse) as arrays, after any given ones."""
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = dict(initializers or {})
    for init in graph.initializer:
        if init.name not in consts:
            consts[init.name] = numpy_helper.to_array(init)
    for sparse in graph.sparse_initializer:
        consts[sparse.values.name] = dense(sparse)
    return consts


def _topological_order(nodes: Iterable[Any], ready: set[str], defined: set[str]) -> list[Any]:
    """``nodes`` so that each comes after the producers of what it (or its subgraphs) reads;
    graphs are sorted by the spec, but be forgiving. ``ready``: names known before any node."""
    ready = ready | {""}
    order: list[Any] = []
    pending = list(nodes)
    while pending:
        progressed, rest = [], []
        for node in pending:
            reads = set(node.input)
            for attr in node.attribute:
                reads |= {n for n in subgraph_reads(attr) if n in defined}
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
    return order


def _fold(kernel: Kernel, consts: tuple[Any, ...], out_slots: tuple[int, ...],
          values: dict[int, Any]) -> bool:
    """Run a node whose inputs are all constant now, its outputs into ``values``; False when it
    fails (left to run time, where the error has context)."""
    try:
        result = kernel(*consts)
    except Exception:
        return False
    for s, v in zip(out_slots, result if type(result) is tuple else (result,)):
        if s >= 0:
            values[s] = v
    return True


def _set_lifetimes(steps: list[Step], keep: set[int]) -> None:
    """Give each step the slots it reads last (outside ``keep``: outputs and constants), and the
    outputs it writes that nothing reads, to free right after it runs."""
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
    read = set(last) | keep
    for i, step in enumerate(steps):
        step.free = (*frees.get(i, ()), *(s for s in step.outputs if s >= 0 and s not in read))


def __getattr__(name: str) -> Any:
    if name == "Plan":  # the former name: "plan" now means selection's plan only
        import warnings

        warnings.warn("deploykit.backends.reference.graph.Plan is now CompiledGraph", DeprecationWarning,
                      stacklevel=2)
        return CompiledGraph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
