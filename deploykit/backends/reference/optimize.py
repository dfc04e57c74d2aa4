"""Graph rewrites applied before compilation, each exact up to float rounding.

- ``fuse_conv_batchnorm``: an inference BatchNormalization that alone consumes a Conv with
  constant weights is folded into the Conv's weights and bias (as every inference runtime does).
- ``fuse_hardswish``: ``x * Clip(x + 3, 0, 6) / 6`` (how exporters spell HardSwish) becomes one
  ``deploykit::HardSwish`` node, computed in one buffer instead of four.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .protos import subgraph_reads

#: private domain of nodes created by these rewrites (registered by ops/elementwise.py)
DOMAIN = "deploykit"


def _standard(node: Any, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")


def _constant_tensors(graph: Any) -> dict[str, Any]:
    """name -> TensorProto of every constant: initializers (unless a graph input of the same name
    may override them, IR < 4) and the tensors of Constant nodes."""
    overridable = {v.name for v in graph.input}
    tensors = {t.name: t for t in graph.initializer if t.name not in overridable}
    for node in graph.node:
        if _standard(node, "Constant") and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensors.setdefault(node.output[0], node.attribute[0].t)
    return tensors


def fuse_conv_batchnorm(graph: Any) -> int:
    """Fold Conv -> BatchNormalization pairs in place; returns how many were folded."""
    inits = _constant_tensors(graph)
    consumers = Counter(name for node in graph.node for name in node.input)
    consumers.update(o.name for o in graph.output)
    producer = {out: node for node in graph.node for out in node.output}
    folded = []
    for bn in graph.node:
        conv = _foldable_conv(bn, producer, consumers, inits)
        if conv is not None and _fold_into_conv(graph, conv, bn, inits):
            folded.append(bn)
    for bn in folded:
        graph.node.remove(bn)
    if folded:
        _drop_unused_constants(graph)
    return len(folded)


def _foldable_conv(bn: Any, producer: dict[str, Any], consumers: Counter[str],
                   inits: dict[str, Any]) -> Any:
    """The Conv that inference BatchNormalization ``bn`` alone consumes, when every weight and
    statistic of the pair is constant; else None."""
    if not _standard(bn, "BatchNormalization") or len(bn.output) != 1 or len(bn.input) < 5:
        return None
    attrs = {a.name: a.i for a in bn.attribute}
    if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
        return None
    conv = producer.get(bn.input[0])
    if conv is None or not _standard(conv, "Conv") or consumers[conv.output[0]] != 1:
        return None
    names = [conv.input[1], *(conv.input[2:3] if len(conv.input) > 2 and conv.input[2] else []),
             *bn.input[1:5]]
    return conv if all(n in inits for n in names) else None


def _fold_into_conv(graph: Any, conv: Any, bn: Any, inits: dict[str, Any]) -> bool:
    """Give ``conv`` the weights and bias of conv-then-bn and bn's output; False (nothing
    changed) when the weights are not floating point."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(inits[conv.input[1]])
    if w.dtype.kind != "f":
        return False
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    b = numpy_helper.to_array(inits[conv.input[2]]) if has_bias else np.zeros(w.shape[0], w.dtype)
    scale, bias, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    k = scale / np.sqrt(var + eps)
    new_w = (w.astype(np.float64) * k.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    new_b = ((b.astype(np.float64) - mean) * k + bias).astype(w.dtype)
    w_name, b_name = f"{conv.output[0]}__bnfused_w", f"{conv.output[0]}__bnfused_b"
    graph.initializer.extend([numpy_helper.from_array(new_w, w_name),
                              numpy_helper.from_array(new_b, b_name)])
    del conv.input[1:]
    conv.input.extend([w_name, b_name])
    conv.output[0] = bn.output[0]
    return True


def _drop_unused_constants(graph: Any) -> None:
    """Remove initializers and Constant nodes nothing reads any more (subgraphs included)."""
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    used |= {v.name for v in graph.input}
    for node in graph.node:
        for attr in node.attribute:
            used |= subgraph_reads(attr)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def _is_scalar(values: dict[str, np.ndarray], name: str, want: float) -> bool:
    v = values.get(name)
    if v is None or v.size != 1 or v.dtype.kind != "f":
        return False
    return abs(float(v.reshape(-1)[0]) - want) < 1e-6


def fuse_hardswish(graph: Any) -> int:
    """Rewrite Add(x,3) -> Clip(0,6) -> Mul(x,.) -> Div(.,6) | Mul(.,1/6) chains in place."""
    from onnx import helper, numpy_helper

    values = {name: numpy_helper.to_array(t) for name, t in _constant_tensors(graph).items()}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    remove, add = [], []
    for node in graph.node:
        found = _hardswish_chain(node, values, only)
        if found is not None:
            x, chain = found
            y = chain[-1].output[0]
            remove += chain
            add.append(helper.make_node("HardSwish", [x], [y], domain=DOMAIN, name=f"{y}__hardswish"))
    for n in remove:
        graph.node.remove(n)
    # the compiler orders nodes topologically: the fused nodes need not stand where the chains did
    graph.node.extend(add)
    return len(add)


def _hardswish_chain(add: Any, values: dict[str, np.ndarray],
                     only: Callable[[str], Any]) -> tuple[str, list[Any]] | None:
    """``x`` and the nodes [Add, Clip, Mul, Div|Mul] spelling HardSwish(x) from ``add``, each the
    only consumer of the one before; None when ``add`` does not start such a chain."""
    if not _standard(add, "Add") or len(add.input) != 2:
        return None
    x, three = add.input if _is_scalar(values, add.input[1], 3.0) else add.input[::-1]
    if not _is_scalar(values, three, 3.0) or x in values:
        return None
    clip = only(add.output[0])
    if not _standard(clip, "Clip") or clip.attribute or len(clip.input) != 3 \
            or not _is_scalar(values, clip.input[1], 0.0) or not _is_scalar(values, clip.input[2], 6.0):
        return None
    mul = only(clip.output[0])
    if not _standard(mul, "Mul") or sorted(mul.input) != sorted([x, clip.output[0]]):
        return None
    last = only(mul.output[0])
    divides = _standard(last, "Div") and last.input[0] == mul.output[0] \
        and _is_scalar(values, last.input[1], 6.0)
    if divides or (_standard(last, "Mul") and any(_is_scalar(values, n, 1 / 6) for n in last.input)):
        return x, [add, clip, mul, last]
    return None
