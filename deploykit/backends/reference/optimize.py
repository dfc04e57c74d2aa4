"""Graph rewrites applied before compilation, each exact up to float rounding.

- ``fuse_conv_batchnorm``: an inference BatchNormalization that alone consumes a Conv with
  constant weights is folded into the Conv's weights and bias (as every inference runtime does).
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
