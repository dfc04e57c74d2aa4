"""``dk.prune``: structured pruning that really shrinks the graph — hidden units removed from chains of
dense layers — each candidate gated on speed and accuracy like ``quantize``.

What it prunes: a MatMul or Gemm with a constant weight, then any elementwise activations (Relu,
Tanh, Sigmoid, LeakyRelu, Elu, Selu, Softplus, Gelu, HardSigmoid, HardSwish, Identity), then a
second MatMul or Gemm with a constant weight, every tensor in between used only there. Removing
hidden unit ``j`` drops column ``j`` of the first weight (and of its bias) and row ``j`` of the second:
the graph computes the same function minus that unit, with smaller matrices. Units are ranked by the
product of the L2 norms of their incoming and outgoing weights; candidates remove 25%, 50% and 75%
of each chain's units (``fractions``).

Unstructured magnitude pruning (``magnitude``: shares of each Conv/MatMul/Gemm weight's smallest
entries set to zero) is offered as what it is — compression only: zeros in dense kernels give ONNX
Runtime no speed, so the speed gate refuses it and the report states the compressed sizes.

Not done, and why: channel pruning of CNNs (a channel's removal must follow depthwise convolutions,
residual adds and squeeze-excite gates that tie channels together — a dependency analysis this
module does not have yet).
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..arguments import check_number
from ..errors import InvalidArgument
from .gates import Gates, engine_for, judge, model_path, output_path, samples_for
from .report import ORIGINAL, QuantizeReport

#: Elementwise ops a hidden unit passes through unchanged in position.
ELEMENTWISE = frozenset({"Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Selu", "Softplus", "Gelu",
                         "HardSigmoid", "HardSwish", "Identity"})
FRACTIONS = (0.25, 0.5, 0.75)
#: Ops whose second input is the weight magnitude pruning zeroes.
WEIGHTED = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


@dataclass(frozen=True)
class Chain:
    """Two dense layers joined by elementwise ops: where the hidden units are."""

    first: onnx.NodeProto
    second: onnx.NodeProto
    hidden: int


def prune(model: str | Path, samples: Any = None, *, output: str | Path,
          fractions: Iterable[float] = FRACTIONS, accuracy: float = 0.99,
          metric: Callable[[dict[str, np.ndarray]], float] | None = None, max_drop: float = 0.01,
          min_speedup: float = 1.1, threads: int = 1, magnitude: Iterable[float] = ()) -> QuantizeReport:
    """Remove the least important hidden units of every dense chain of the ONNX model at ``model``
    (each fraction a candidate), keep the fastest candidate within the gates, else the original.
    ``samples`` as ``quantize``'s ``calibration`` (what accuracy is checked on). ``magnitude``: shares
    of weights to zero, unstructured — one compression-only candidate each (``[]``: none; the
    report gives their compressed sizes). Returns the report."""
    source = model_path(model)
    target = output_path(output, source)
    gates = Gates(accuracy, metric, max_drop, min_speedup, threads)
    shares = _fractions(fractions)
    zeroed = _fractions(magnitude, "magnitude", allow_empty=True)
    proto = onnx.load(str(source))
    chains = find_chains(proto)
    original = engine_for(source, threads, "the original model")
    data = samples_for(original, samples, "samples", "prune")
    notes = [] if samples is not None else ["samples: none given, made-up inputs used"]
    if not chains:
        notes.append("no chain of dense layers (MatMul/Gemm -> elementwise -> MatMul/Gemm) to prune")
    notes += [f"chain {c.first.name or c.first.output[0]} -> {c.second.name or c.second.output[0]}: "
              f"{c.hidden} hidden units" for c in chains]
    work = Path(tempfile.mkdtemp(prefix="deploykit-prune-"))
    try:
        built: dict[str, Path | str] = {}
        for share in shares if chains else ():
            name = f"units-{round(share * 100)}%"
            path = work / f"{name}.onnx"
            onnx.save(pruned(proto, share), str(path))
            built[name] = path
        if zeroed:
            notes.append(f"{ORIGINAL}: {_compressed(source.read_bytes())} KiB compressed (zlib)")
        for share in zeroed:
            name = f"magnitude-{round(share * 100)}%"
            path = work / f"{name}.onnx"
            onnx.save(magnitude_pruned(proto, share), str(path))
            built[name] = path
            notes.append(f"{name}: compression only (zeros cost dense kernels the same time); "
                         f"{_compressed(path.read_bytes())} KiB compressed (zlib)")
        rows, chosen, path = judge(source, original, built, data, gates, target)
    finally:
        original.close()
        shutil.rmtree(work, ignore_errors=True)
    return QuantizeReport(str(source), chosen.name, path, rows, len(data), threads, notes, step="prune")


def _fractions(fractions: Iterable[float], argument: str = "fractions", allow_empty: bool = False
               ) -> list[float]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Iterable):
        raise InvalidArgument(f"{argument} must be a list of shares to remove, got {fractions!r}")
    shares = list(fractions)
    for share in shares:
        check_number(share, argument, above=0)
        if share >= 1:
            raise InvalidArgument(f"{argument} are shares to remove, above 0 and below 1; got {share!r}")
    if not shares and not allow_empty:
        raise InvalidArgument(f"{argument} is empty: give at least one share to remove")
    return shares


def _compressed(data: bytes) -> int:
    return round(len(zlib.compress(data, 6)) / 1024)


def find_chains(proto: onnx.ModelProto) -> list[Chain]:
    """Every prunable chain of the graph (see the module)."""
    graph = proto.graph
    weights = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    chains = []
    for node in graph.node:
        hidden = _dense_units(node, weights, "out")
        if hidden is None:
            continue
        tensor, second = node.output[0], None
        while True:
            users = consumers.get(tensor, [])
            if tensor in outputs or len(users) != 1:
                break
            user = users[0]
            if user.op_type in ELEMENTWISE and user.input[0] == tensor:
                tensor = user.output[0]
                continue
            if _dense_units(user, weights, "in") == hidden and user.input[0] == tensor:
                second = user
            break
        if second is not None and _only_user(node, weights, consumers) and \
                _only_user(second, weights, consumers):
            chains.append(Chain(node, second, hidden))
    return chains


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dense_units(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto], side: str) -> int | None:
    """A dense layer's output units (``side="out"``) or input units (``"in"``) from its constant
    2-D weight; None when it is no such layer."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
        return None
    dims = list(weights[node.input[1]].dims)
    if len(dims) != 2 or (node.op_type == "Gemm" and _attr(node, "transA", 0)):
        return None
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] and node.input[2] not in weights:
        return None
    trans_b = node.op_type == "Gemm" and bool(_attr(node, "transB", 0))
    inputs, outs = (dims[1], dims[0]) if trans_b else (dims[0], dims[1])
    return int(outs if side == "out" else inputs)


def _only_user(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto],
               consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    """The layer's weight (and bias) feed nothing else, so they may change shape."""
    constants = [n for n in node.input[1:] if n in weights]
    return all(len(consumers.get(n, [])) == 1 for n in constants)


def pruned(proto: onnx.ModelProto, share: float) -> onnx.ModelProto:
    """A copy of ``proto`` with ``share`` of every chain's hidden units removed (the least important)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    weights = {i.name: i for i in model.graph.initializer}
    for chain in find_chains(model):
        first, second = chain.first, chain.second
        w1, w2 = (numpy_helper.to_array(weights[n.input[1]]) for n in (first, second))
        t1 = first.op_type == "Gemm" and bool(_attr(first, "transB", 0))
        t2 = second.op_type == "Gemm" and bool(_attr(second, "transB", 0))
        incoming = w1 if t1 else w1.T  # [hidden, in]
        outgoing = w2.T if t2 else w2  # [hidden, out]
        score = (np.linalg.norm(incoming.astype(np.float64), axis=1)
                 * np.linalg.norm(outgoing.astype(np.float64), axis=1))
        keep = max(1, round(chain.hidden * (1 - share)))
        kept = np.sort(np.argsort(-score, kind="stable")[:keep])
        _replace(weights[first.input[1]], w1[kept] if t1 else w1[:, kept])
        _replace(weights[second.input[1]], w2[:, kept] if t2 else w2[kept])
        if first.op_type == "Gemm" and len(first.input) > 2 and first.input[2]:
            bias = numpy_helper.to_array(weights[first.input[2]])
            if bias.size == chain.hidden:
                _replace(weights[first.input[2]], bias.reshape(-1)[kept].reshape(
                    (len(kept),) if bias.ndim == 1 else (1, len(kept))))
    del model.graph.value_info[:]  # intermediate shapes changed: let shape inference redo them
    return onnx.shape_inference.infer_shapes(model)


def magnitude_pruned(proto: onnx.ModelProto, share: float) -> onnx.ModelProto:
    """A copy of ``proto`` with ``share`` of each Conv/ConvTranspose/MatMul/Gemm constant weight's
    entries (the smallest in magnitude, per tensor) set to zero; shapes unchanged."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    weights = {i.name: i for i in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        name = node.input[1] if node.op_type in WEIGHTED and len(node.input) > 1 else ""
        if name not in weights or name in done:
            continue
        value = numpy_helper.to_array(weights[name])
        if value.ndim < 2 or value.dtype.kind != "f":
            continue
        count = int(value.size * share)
        if count:
            flat = value.reshape(-1).copy()
            flat[np.argpartition(np.abs(flat), count - 1)[:count]] = 0
            _replace(weights[name], flat.reshape(value.shape))
        done.add(name)
    return model


def _replace(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), tensor.name))


__all__ = ["FRACTIONS", "WEIGHTED", "Chain", "find_chains", "magnitude_pruned", "prune", "pruned"]
