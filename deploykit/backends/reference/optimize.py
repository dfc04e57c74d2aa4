"""Graph rewrites applied before compilation, each exact up to float rounding.

- ``fuse_conv_batchnorm``: an inference BatchNormalization that alone consumes a Conv with
  constant weights is folded into the Conv's weights and bias (as every inference runtime does).
- ``fuse_hardswish``: ``x * Clip(x + 3, 0, 6) / 6`` (how exporters spell HardSwish) becomes one
  ``deploykit::HardSwish`` node, computed in one buffer instead of four.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def fuse_conv_batchnorm(graph: Any) -> int:
    """Fold Conv -> BatchNormalization pairs in place; returns how many were folded."""
    from onnx import numpy_helper

    from .graph import _subgraph_reads_of

    overridable = {v.name for v in graph.input}  # IR < 4: an initializer that is also an input
    inits = {t.name: t for t in graph.initializer if t.name not in overridable}
    for node in graph.node:  # Constant nodes holding a tensor count as initializers here
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            inits.setdefault(node.output[0], node.attribute[0].t)
    consumers = Counter(name for node in graph.node for name in node.input)
    consumers.update(o.name for o in graph.output)
    producer = {out: node for node in graph.node for out in node.output}
    fused = 0
    remove: list[Any] = []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: a for a in bn.attribute}
        if len(bn.output) != 1 or ("training_mode" in attrs and attrs["training_mode"].i):
            continue
        if "spatial" in attrs and not attrs["spatial"].i:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            continue
        if consumers[conv.output[0]] != 1 or len(bn.input) < 5:
            continue
        names = [conv.input[1], *(conv.input[2:3] if len(conv.input) > 2 and conv.input[2] else []),
                 *bn.input[1:5]]
        if not all(n in inits for n in names):
            continue
        w = numpy_helper.to_array(inits[conv.input[1]])
        if w.dtype.kind != "f":
            continue
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        b = numpy_helper.to_array(inits[conv.input[2]]) if has_bias else np.zeros(w.shape[0], w.dtype)
        scale, bias, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64)
                                  for n in bn.input[1:5])
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        k = scale / np.sqrt(var + eps)
        new_w = (w.astype(np.float64) * k.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        new_b = ((b.astype(np.float64) - mean) * k + bias).astype(w.dtype)
        w_name, b_name = f"{conv.output[0]}__bnfused_w", f"{conv.output[0]}__bnfused_b"
        graph.initializer.extend([numpy_helper.from_array(new_w, w_name),
                                  numpy_helper.from_array(new_b, b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        remove.append(bn)
        fused += 1
    for node in remove:
        graph.node.remove(node)
    if fused:  # drop constants nothing reads any more (subgraphs may read them too)
        used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
        used |= overridable
        for node in graph.node:
            for attr in node.attribute:
                used |= _subgraph_reads_of(attr) if attr.g.node or attr.graphs else set()
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
        for node in dead:
            graph.node.remove(node)
    return fused


#: private domain of nodes created by these rewrites (registered by ops/elementwise.py)
DOMAIN = "deploykit"


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    overridable = {v.name for v in graph.input}
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer
              if t.name not in overridable}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _is_scalar(values: dict[str, np.ndarray], name: str, want: float) -> bool:
    v = values.get(name)
    if v is None or v.size != 1 or v.dtype.kind != "f":
        return False
    return abs(float(v.reshape(-1)[0]) - want) < 1e-6


def fuse_hardswish(graph: Any) -> int:
    """Rewrite Add(x,3) -> Clip(0,6) -> Mul(x,.) -> Div(.,6) | Mul(.,1/6) chains in place."""
    from onnx import helper

    values = _constants(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    def standard(node: Any, op: str) -> bool:
        return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")

    fused, remove, add = 0, [], []
    for node in graph.node:
        if not standard(node, "Add") or len(node.input) != 2:
            continue
        x, three = (node.input if _is_scalar(values, node.input[1], 3.0) else node.input[::-1])
        if not _is_scalar(values, three, 3.0) or x in values:
            continue
        clip = only(node.output[0])
        if not standard(clip, "Clip") or clip.attribute or len(clip.input) != 3 \
                or not _is_scalar(values, clip.input[1], 0.0) or not _is_scalar(values, clip.input[2], 6.0):
            continue
        mul = only(clip.output[0])
        if not standard(mul, "Mul") or sorted(mul.input) != sorted([x, clip.output[0]]):
            continue
        last = only(mul.output[0])
        if not ((standard(last, "Div") and last.input[0] == mul.output[0]
                 and _is_scalar(values, last.input[1], 6.0))
                or (standard(last, "Mul") and any(_is_scalar(values, n, 1 / 6) for n in last.input))):
            continue
        remove += [node, clip, mul, last]
        add.append(helper.make_node("HardSwish", [x], [last.output[0]], domain=DOMAIN,
                                    name=f"{last.output[0]}__hardswish"))
        fused += 1
    if fused:
        for n in remove:
            graph.node.remove(n)
        # insert each fused node where its chain's last node stood is not needed: the
        # compiler orders nodes topologically
        graph.node.extend(add)
    return fused
