"""Small ONNX models built in code for the edge cases real models rarely hit."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], *, opset: int = 17,
           initializers: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def vi(name: str, elem: int, shape: list[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def dynamic_add() -> onnx.ModelProto:
    """z[N,3] = x[N,3] + y[N,3]: a symbolic batch dim shared by two inputs."""
    return _model([helper.make_node("Add", ["x", "y"], ["z"])],
                  [vi("x", TensorProto.FLOAT, ["N", 3]), vi("y", TensorProto.FLOAT, ["N", 3])],
                  [vi("z", TensorProto.FLOAT, ["N", 3])])


def matmul_chain(rows: int = 64, width: int = 512, depth: int = 40) -> onnx.ModelProto:
    """y[rows,width] = x @ w0 @ ... @ w(depth-1), seeded weights scaled to keep values near 1: a
    model whose run takes a while (64 x 512 x 40: 1.3 GFLOP, ~20 ms on one AVX2 core)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width))
                                       .astype(np.float32), f"w{k}") for k in range(depth)]
    nodes = [helper.make_node("MatMul", ["x" if k == 0 else f"h{k - 1}", f"w{k}"],
                              ["y" if k == depth - 1 else f"h{k}"]) for k in range(depth)]
    return _model(nodes, [vi("x", TensorProto.FLOAT, [rows, width])],
                  [vi("y", TensorProto.FLOAT, [rows, width])], initializers=weights)


def many_io() -> onnx.ModelProto:
    """Five inputs of four dtypes, four outputs (float, int64, bool, int32)."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Mul", ["i", "j"], ["prod"]),
        helper.make_node("Not", ["flag"], ["not_flag"]),
        helper.make_node("Where", ["flag", "i", "j"], ["picked"]),
        helper.make_node("Cast", ["picked"], ["picked32"], to=TensorProto.INT32),
    ]
    return _model(nodes,
                  [vi("a", TensorProto.FLOAT, ["batch", 4]), vi("b", TensorProto.FLOAT, ["batch", 4]),
                   vi("i", TensorProto.INT64, ["batch", 4]), vi("j", TensorProto.INT64, ["batch", 4]),
                   vi("flag", TensorProto.BOOL, ["batch", 4])],
                  [vi("sum", TensorProto.FLOAT, ["batch", 4]), vi("prod", TensorProto.INT64, ["batch", 4]),
                   vi("not_flag", TensorProto.BOOL, ["batch", 4]),
                   vi("picked32", TensorProto.INT32, ["batch", 4])])


def fixed_image() -> onnx.ModelProto:
    """y = relu(x) on a fixed float32[1,3,4,4]: every dim is checked."""
    return _model([helper.make_node("Relu", ["x"], ["y"])],
                  [vi("x", TensorProto.FLOAT, [1, 3, 4, 4])], [vi("y", TensorProto.FLOAT, [1, 3, 4, 4])])


def uint8_and_half() -> onnx.ModelProto:
    """u8[N,2] -> cast to float16, added to h[N,2] (float16)."""
    nodes = [helper.make_node("Cast", ["u"], ["uf"], to=TensorProto.FLOAT16),
             helper.make_node("Add", ["uf", "h"], ["out"])]
    return _model(nodes, [vi("u", TensorProto.UINT8, ["N", 2]), vi("h", TensorProto.FLOAT16, ["N", 2])],
                  [vi("out", TensorProto.FLOAT16, ["N", 2])])


def strings() -> onnx.ModelProto:
    """Identity over a string tensor."""
    return _model([helper.make_node("Identity", ["s"], ["t"])],
                  [vi("s", TensorProto.STRING, ["N"])], [vi("t", TensorProto.STRING, ["N"])])


def reshape_to() -> onnx.ModelProto:
    """y = reshape(x[N,6], shape): a bad ``shape`` value fails inside the runtime."""
    return _model([helper.make_node("Reshape", ["x", "shape"], ["y"])],
                  [vi("x", TensorProto.FLOAT, ["N", 6]), vi("shape", TensorProto.INT64, [2])],
                  [vi("y", TensorProto.FLOAT, [None, None])])


def scalar_input() -> onnx.ModelProto:
    """y[N] = x[N] * k where k is a 0-d int64 (like silero's ``sr``) cast to float."""
    nodes = [helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "kf"], ["y"])]
    return _model(nodes, [vi("x", TensorProto.FLOAT, ["N"]), vi("k", TensorProto.INT64, [])],
                  [vi("y", TensorProto.FLOAT, ["N"])])


def with_initializer_input() -> onnx.ModelProto:
    """IR-3 style: the weight ``w`` is listed as a graph input *and* has an initializer."""
    w = numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "w")
    return _model([helper.make_node("Mul", ["x", "w"], ["y"])],
                  [vi("x", TensorProto.FLOAT, ["N", 2]), vi("w", TensorProto.FLOAT, [2])],
                  [vi("y", TensorProto.FLOAT, ["N", 2])], initializers=[w])


def future_opset(version: int = 99) -> onnx.ModelProto:
    """A Relu model that claims an opset no runtime knows."""
    return _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, ["N"])],
                  [vi("y", TensorProto.FLOAT, ["N"])], opset=version)


def unknown_op() -> onnx.ModelProto:
    """A node of an operator that does not exist in any domain."""
    model = _model([helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.custom")],
                   [vi("x", TensorProto.FLOAT, ["N"])], [vi("y", TensorProto.FLOAT, ["N"])])
    model.opset_import.append(helper.make_opsetid("example.custom", 1))
    return model


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model computing in float64: every float32 tensor, type and cast becomes double.
    A higher-precision oracle for judging which of two float32 results is closer to exact."""
    from onnx import AttributeProto

    out = onnx.ModelProto()
    out.CopyFrom(model)

    def tensor(t: onnx.TensorProto) -> None:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))

    def vtype(t: onnx.TypeProto) -> None:
        which = t.WhichOneof("value")
        if which == "tensor_type" and t.tensor_type.elem_type == TensorProto.FLOAT:
            t.tensor_type.elem_type = TensorProto.DOUBLE
        elif which == "sequence_type":
            vtype(t.sequence_type.elem_type)
        elif which == "optional_type":
            vtype(t.optional_type.elem_type)

    def graph(g: onnx.GraphProto) -> None:
        for t in g.initializer:
            tensor(t)
        for v in [*g.input, *g.output, *g.value_info]:
            vtype(v.type)
        for node in g.node:
            for a in node.attribute:
                if a.type == AttributeProto.TENSOR:
                    tensor(a.t)
                elif a.type == AttributeProto.GRAPH:
                    graph(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        graph(sub)
                elif a.name == "to" and a.type == AttributeProto.INT and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.DOUBLE

    graph(out.graph)
    return out


def image_identity(height: int | str = "H", width: int | str = "W") -> onnx.ModelProto:
    """y = x on float32[N, 3, height, width]: what a preprocessing pipeline made, returned as is."""
    return _model([helper.make_node("Identity", ["x"], ["y"])],
                  [vi("x", TensorProto.FLOAT, ["N", 3, height, width])],
                  [vi("y", TensorProto.FLOAT, ["N", 3, height, width])])
