"""Train the demo's digits classifier and export it to ONNX — reproducibly, with our own code.

Data: scikit-learn's bundled 8x8 digits (1797 images, shipped inside the scikit-learn wheel; no
download). Model: a two-layer perceptron trained with Adam in NumPy, exported with onnx.helper as
``images`` float32[N,1,8,8] (pixel values 0..16, as the data set stores them) ->
``probabilities`` float32[N,10] and ``label`` int64[N].

    python -m deploykit.demo.build_digits        # rewrites digits.onnx and digits_test.npz here

Needs scikit-learn (in the ``dev`` extra); the demo itself needs only the files this writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
HIDDEN = 64
EPOCHS = 400
TEST_FRACTION = 0.2


def split_digits(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels); images uint8 (n, 8, 8) in 0..16."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def train(images: np.ndarray, labels: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Full-batch Adam on softmax cross-entropy; float64 math, float32 weights out."""
    rng = np.random.default_rng(seed)
    x = images.reshape(len(images), -1).astype(np.float64) / 16.0
    y = np.eye(10)[labels]
    params = {
        "w1": rng.normal(0, np.sqrt(2 / 64), (64, HIDDEN)), "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, 10)), "b2": np.zeros(10),
    }
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    lr, b1, b2, eps, decay = 0.01, 0.9, 0.999, 1e-8, 1e-4
    for step in range(1, EPOCHS + 1):
        h_pre = x @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        logits = h @ params["w2"] + params["b2"]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d_logits = (p - y) / len(x)
        grads = {"w2": h.T @ d_logits + decay * params["w2"], "b2": d_logits.sum(0)}
        d_h = (d_logits @ params["w2"].T) * (h_pre > 0)
        grads["w1"] = x.T @ d_h + decay * params["w1"]
        grads["b1"] = d_h.sum(0)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**step), v[k] / (1 - b2**step)
            params[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return {k: p.astype(np.float32) for k, p in params.items()}


def export(params: dict[str, np.ndarray], accuracy: float) -> bytes:
    """The ONNX graph: Div(16) -> Flatten -> Gemm -> Relu -> Gemm -> Softmax, ArgMax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    inits.append(numpy_helper.from_array(np.array(16.0, np.float32), "scale"))
    nodes = [
        helper.make_node("Div", ["images", "scale"], ["scaled"]),
        helper.make_node("Flatten", ["scaled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label_2d"], axis=1, keepdims=1),
        helper.make_node("Squeeze", ["label_2d", "squeeze_axes"], ["label"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "squeeze_axes"))
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="deploykit.demo.build_digits", producer_version="1")
    model.ir_version = 8
    model.doc_string = ("8x8 digit classifier trained on scikit-learn's bundled digits data set "
                        "by deploykit/demo/build_digits.py")
    helper.set_model_props(model, {"dataset": "sklearn.datasets.load_digits",
                                   "seed": str(SEED), "test_accuracy": f"{accuracy:.4f}"})
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def predict(params: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(16.0)
    h = np.maximum(x @ params["w1"] + params["b1"], 0)
    return np.argmax(h @ params["w2"] + params["b2"], axis=1)


def build(out_dir: Path = HERE) -> float:
    """Train, export and write ``digits.onnx`` + ``digits_test.npz``; returns test accuracy."""
    x_train, y_train, x_test, y_test = split_digits()
    params = train(x_train, y_train)
    accuracy = float((predict(params, x_test) == y_test).mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "digits.onnx").write_bytes(export(params, accuracy))
    np.savez_compressed(out_dir / "digits_test.npz", images=x_test, labels=y_test)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args()
    accuracy = build(args.out)
    print(f"wrote {args.out / 'digits.onnx'} (held-out accuracy {accuracy:.4f})")


if __name__ == "__main__":
    main()
