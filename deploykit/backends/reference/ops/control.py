"""Control flow: If, Loop, Scan — their bodies are compiled graphs run by the graph executor."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

# Semantics are unchanged across these schema versions (only the accepted types grew).
_IF_LOOP = (1, 11, 13, 16, 19, 21, 23, 24, 25)
_SCAN = (9, 11, 16, 19, 21, 23, 24, 25)


def _graph_dtypes(graph: Any) -> list[np.dtype]:
    from onnx.helper import tensor_dtype_to_np_dtype

    out = []
    for v in graph.output:
        elem = v.type.tensor_type.elem_type
        out.append(np.dtype(tensor_dtype_to_np_dtype(elem)) if elem else np.dtype(np.float32))
    return out


@register("If", *_IF_LOOP)
def if_(node: Node) -> Kernel:
    assert node.compile_subgraph is not None
    then_body = node.compile_subgraph(node.attrs["then_branch"])
    else_body = node.compile_subgraph(node.attrs["else_branch"])

    def kernel(cond: np.ndarray, outer: dict[str, Any] | None = None) -> tuple[Any, ...]:
        body = then_body if bool(np.asarray(cond).reshape(-1)[0]) else else_body
        return tuple(body.run([], outer))

    return kernel


@register("Loop", *_IF_LOOP)
def loop(node: Node) -> Kernel:
    assert node.compile_subgraph is not None
    body_graph = node.attrs["body"]
    body = node.compile_subgraph(body_graph)
    n_carried = node.n_inputs - 2
    scan_dtypes = _graph_dtypes(body_graph)[1 + n_carried:]

    def kernel(max_trip: Any, cond: Any, *carried: Any, outer: dict[str, Any] | None = None
               ) -> tuple[Any, ...]:
        limit = None if max_trip is None else int(np.asarray(max_trip).reshape(-1)[0])
        go = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
        values = list(carried)
        scans: list[list[Any]] = [[] for _ in scan_dtypes]
        i = 0
        while go and (limit is None or i < limit):
            outs = body.run([np.array(i, dtype=np.int64), np.array(go), *values], outer)
            go = bool(np.asarray(outs[0]).reshape(-1)[0])
            values = list(outs[1:1 + n_carried])
            for acc, value in zip(scans, outs[1 + n_carried:]):
                acc.append(value)
            i += 1
        stacked = [np.stack(acc) if acc else np.zeros((0,), dtype)
                   for acc, dtype in zip(scans, scan_dtypes)]
        return (*values, *stacked)

    return kernel


@register("Scan", *_SCAN)
def scan(node: Node) -> Kernel:
    assert node.compile_subgraph is not None
    body = node.compile_subgraph(node.attrs["body"])
    m = int(node.attrs["num_scan_inputs"])
    n_states = node.n_inputs - m
    in_axes = list(node.attr("scan_input_axes", [0] * m))
    in_dirs = list(node.attr("scan_input_directions", [0] * m))
    n_scan_out = node.n_outputs - n_states
    out_axes = list(node.attr("scan_output_axes", [0] * n_scan_out))
    out_dirs = list(node.attr("scan_output_directions", [0] * n_scan_out))

    def kernel(*inputs: Any, outer: dict[str, Any] | None = None) -> tuple[Any, ...]:
        states = list(inputs[:n_states])
        xs = [np.moveaxis(x, a if a >= 0 else a + x.ndim, 0)
              for x, a in zip(inputs[n_states:], in_axes)]
        xs = [x[::-1] if d else x for x, d in zip(xs, in_dirs)]
        steps = xs[0].shape[0] if xs else 0
        acc: list[list[Any]] = [[] for _ in range(n_scan_out)]
        for t in range(steps):
            outs = body.run([*states, *(x[t] for x in xs)], outer)
            states = list(outs[:n_states])
            for a, value in zip(acc, outs[n_states:]):
                a.append(value)
        results = []
        for a, axis, direction in zip(acc, out_axes, out_dirs):
            y = np.stack(a[::-1] if direction else a)
            results.append(np.moveaxis(y, 0, axis if axis >= 0 else axis + y.ndim))
        return (*states, *results)

    return kernel


@register("Scan", 8)
def scan8(node: Node) -> Kernel:
    """Opset-8 Scan: a leading batch axis on every input, scan along axis 1, optional lengths."""
    assert node.compile_subgraph is not None
    body = node.compile_subgraph(node.attrs["body"])
    m = int(node.attrs["num_scan_inputs"])
    n_states = node.n_inputs - 1 - m
    dirs = list(node.attr("directions", [0] * m))

    def kernel(lengths: Any, *inputs: Any, outer: dict[str, Any] | None = None) -> tuple[Any, ...]:
        states, xs = inputs[:n_states], inputs[n_states:]
        batch = (states or xs)[0].shape[0]
        final: list[list[Any]] = [[] for _ in range(n_states)]
        scanned: list[list[Any]] = []
        for b in range(batch):
            carry = [s[b] for s in states]
            steps = xs[0].shape[1] if lengths is None else int(np.asarray(lengths)[b])
            seqs = [x[b, :steps][::-1] if d else x[b, :steps] for x, d in zip(xs, dirs)]
            acc: list[list[Any]] = []
            for t in range(steps):
                outs = body.run([*carry, *(s[t] for s in seqs)], outer)
                carry = list(outs[:n_states])
                if not acc:
                    acc = [[] for _ in outs[n_states:]]
                for a, value in zip(acc, outs[n_states:]):
                    a.append(value)
            for f, c in zip(final, carry):
                f.append(c)
            scanned.append([np.stack(a) for a in acc])
        results = [np.stack(f) for f in final]
        results += [np.stack([s[k] for s in scanned]) for k in range(len(scanned[0]))] if scanned else []
        return tuple(results)

    return kernel


# Optional values are the value itself, or None when empty.
@register("Optional", 15)
def optional(node: Node) -> Kernel:
    return lambda x=None: x


@register("OptionalHasElement", 15, 18)
def optional_has_element(node: Node) -> Kernel:
    return lambda x=None: np.array(x is not None)


@register("OptionalGetElement", 15, 18)
def optional_get_element(node: Node) -> Kernel:
    def kernel(x: Any) -> Any:
        if x is None:
            raise ValueError("OptionalGetElement: the optional is empty")
        return x

    return kernel
