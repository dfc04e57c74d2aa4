"""``deploykit info MODEL``: format, size, sha256 and the I/O signature of a model (plus opsets and
producer for ONNX). The format comes from the file's content; ONNX's signature is read from the
graph, any other format's by loading it on the first usable backend that reads that format."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..backends import auto_candidates, availability
from ..loading import load
from ..model import ModelSource, onnx_io_specs, open_model
from ..spec import TensorSpec, dtype_name
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    source = open_model(args.model, check=False)
    data: dict[str, Any] = {"path": source.label, "format": source.format, "size_bytes": source.size,
                            "sha256": source.sha256()}
    suffix = source.path.suffix.lower() if source.path is not None else ""
    if suffix in (".onnx", ".tflite") and suffix != f".{source.format}":
        data["note"] = f"named {suffix}, but the content is a {source.format} model"
    data.update(_onnx_facts(source) if source.format == "onnx" else _runtime_facts(args.model, source))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key in ("inputs", "outputs"):
            for t in value:
                print(f"{key[:-1]:<11} {_tensor_text(t)}")
        elif key in ("opsets", "metadata"):
            print(f"{key:<11} " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            print(f"{key:<11} {value}")
    return 0


def _onnx_facts(source: ModelSource) -> dict[str, Any]:
    proto = source.proto
    inputs, outputs = onnx_io_specs(proto)
    facts: dict[str, Any] = {
        "ir_version": proto.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "nodes": len(proto.graph.node),
    }
    if proto.doc_string.strip():
        facts["doc"] = proto.doc_string.strip().splitlines()[0]
    if proto.metadata_props:
        facts["metadata"] = {p.key: p.value for p in proto.metadata_props}
    return facts | {"inputs": [_tensor(s) for s in inputs], "outputs": [_tensor(s) for s in outputs]}


def _runtime_facts(model: str, source: ModelSource) -> dict[str, Any]:
    """Inputs and outputs as the first usable backend that loads the format reads them (loading
    also checks the whole file); which backend read them is said."""
    unusable: list[str] = []
    for name in auto_candidates(source.format):
        status = availability(name)
        if not status.available:
            unusable.append(f"{name}: {status.reason}")
            continue
        with load(model, backend=name) as engine:
            return {"read_by": name, "inputs": [_tensor(s) for s in engine.inputs],
                    "outputs": [_tensor(s) for s in engine.outputs]}
    why = "; ".join(unusable) or "no backend registered reads it"
    return {"signature": f"unknown: no backend that reads {source.format} models is usable here ({why})"}


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": spec.name, "dtype": dtype_name(spec.dtype),
                            "shape": None if spec.shape is None else list(spec.shape)}
    if spec.kind != "tensor":
        data["kind"] = spec.kind
    if spec.quantization is not None:
        data["quantization"] = str(spec.quantization)
    return data


def _tensor_text(t: dict[str, Any]) -> str:
    if "kind" in t:
        return f"{t['name']}: {t['kind']}"
    shape = "[...]" if t["shape"] is None else \
        "[" + ",".join("?" if d is None else str(d) for d in t["shape"]) + "]"
    quant = f" (quantized: {t['quantization']})" if "quantization" in t else ""
    return f"{t['name']}: {t['dtype']}{shape}{quant}"


COMMAND = Command("info", "I/O signature, opset, size and sha256 of a model", add_arguments, run)
