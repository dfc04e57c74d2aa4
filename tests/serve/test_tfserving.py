"""The TF Serving REST API end to end on the loopback: plain HTTP, as TF Serving's documentation shows
with curl, against a real uvicorn server in this process; every answer compared with ``dk.load``."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from deploykit.serve import Server


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON body) of one request; an HTTP error status is a result, not an exception."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def predict(url: str, payload: Any) -> tuple[int, Any]:
    return call(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def serving(repo: Path, **limits: int) -> Server:
    """A Server (its app speaks KServe v2 and TF Serving REST)."""
    return Server(repo, port=0, **limits)


def two_input_model(path: Path) -> Path:
    """x float32[N,3], k int64[N,3] -> sum float32[N,3] (x + k), neg float32[N,3] (-x),
    and text string[N] -> text_bytes string[N] (the same strings)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "kf"], ["sum"]), helper.make_node("Neg", ["x"], ["neg"]),
         helper.make_node("Identity", ["text"], ["text_bytes"])],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
                helper.make_tensor_value_info("k", TensorProto.INT64, ["N", 3]),
                helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("text_bytes", TensorProto.STRING, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits versions 1 and 2 (labels stable -> 1, canary -> 2) and the three-input model ``two``."""
    root = tmp_path_factory.mktemp("tfrepo")
    for version in (1, 2):
        (root / "digits" / str(version)).mkdir(parents=True)
        shutil.copy(MODEL_PATH, root / "digits" / str(version) / "model.onnx")
    (root / "digits" / "config.json").write_text(json.dumps(
        {"version_policy": {"all": True}, "labels": {"stable": 1, "canary": 2}}))
    (root / "two" / "1").mkdir(parents=True)
    two_input_model(root / "two" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with serving(repo) as running:
        yield running


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    images, _ = load_test_data()
    return images[:4], dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images[:4]})


def test_model_status_as_documented(server: Server) -> None:
    ok = {"error_code": "OK", "error_message": ""}
    assert call(f"{server.url}/v1/models/digits") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": ok},
        {"version": "2", "state": "AVAILABLE", "status": ok}]})
    assert call(f"{server.url}/v1/models/digits/versions/2") == (200, {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": ok}]})
    stable = call(f"{server.url}/v1/models/digits/labels/stable")[1]
    assert stable["model_version_status"][0]["version"] == "1"


def test_metadata_is_a_signature_def(server: Server) -> None:
    status, meta = call(f"{server.url}/v1/models/digits/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "2"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    dim = [{"size": s, "name": ""} for s in ("1", "8", "8")]
    assert signature["inputs"] == {"images": {"dtype": "DT_FLOAT", "name": "images", "tensor_shape": {
        "dim": [{"size": "-1", "name": signature["inputs"]["images"]["tensor_shape"]["dim"][0]["name"]},
                *dim], "unknown_rank": False}}}
    assert {k: v["dtype"] for k, v in signature["outputs"].items()} == {"probabilities": "DT_FLOAT",
                                                                        "label": "DT_INT64"}
    two = call(f"{server.url}/v1/models/two/versions/1/metadata")[1]["metadata"]["signature_def"]
    inputs = two["signature_def"]["serving_default"]["inputs"]
    assert inputs["text"]["dtype"] == "DT_STRING" and inputs["k"]["dtype"] == "DT_INT64"
    assert inputs["x"]["tensor_shape"]["dim"] == [{"size": "-1", "name": "N"}, {"size": "3", "name": ""}]


def test_predict_row_and_columnar_on_digits(server: Server, digits: Any) -> None:
    images, want = digits
    status, answer = predict(f"{server.url}/v1/models/digits:predict", {"instances": images.tolist()})
    assert status == 200 and list(answer) == ["predictions"] and len(answer["predictions"]) == 4
    first = answer["predictions"][0]
    assert set(first) == {"probabilities", "label"}  # several outputs: one object per example
    np.testing.assert_array_equal(np.asarray([p["probabilities"] for p in answer["predictions"]],
                                             np.float32), want["probabilities"])
    assert [p["label"] for p in answer["predictions"]] == want["label"].tolist()
    status, answer = predict(f"{server.url}/v1/models/digits/versions/1:predict",
                             {"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    assert status == 200 and list(answer) == ["outputs"]
    np.testing.assert_array_equal(np.asarray(answer["outputs"]["probabilities"], np.float32),
                                  want["probabilities"])
    assert answer["outputs"]["label"] == want["label"].tolist()
    status, unnamed = predict(f"{server.url}/v1/models/digits/labels/canary:predict",
                              {"inputs": images.tolist()})
    assert status == 200 and unnamed == answer


def test_predict_several_inputs_and_b64(server: Server, tmp_path: Path) -> None:
    engine = dk.load(two_input_model(tmp_path / "two.onnx"), backend="onnxruntime")
    x = np.array([[0.5, 1.5, -2.0], [3.0, 0.25, 1.0]], np.float32)
    k = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    text: list[Any] = [b"\x00\xffbin", "plain"]
    want = engine.run({"x": x, "k": k, "text": np.array(text, dtype=object)})
    instances = [{"x": x[i].tolist(), "k": k[i].tolist(),
                  "text": {"b64": base64.b64encode(text[i]).decode()} if i == 0 else "plain"}
                 for i in range(2)]
    status, answer = predict(f"{server.url}/v1/models/two:predict", {"instances": instances})
    assert status == 200, answer
    rows = answer["predictions"]
    np.testing.assert_array_equal(np.asarray([r["sum"] for r in rows], np.float32), want["sum"])
    np.testing.assert_array_equal(np.asarray([r["neg"] for r in rows], np.float32), want["neg"])
    # an output named *_bytes is always base64, as TF Serving does; the values are what the engine gives
    # in-process (onnxruntime hands string tensors back as str)
    assert [base64.b64decode(r["text_bytes"]["b64"]) for r in rows] == [
        t.encode() if isinstance(t, str) else t for t in want["text_bytes"]]
    status, answer = predict(f"{server.url}/v1/models/two:predict", {"inputs": {
        "x": x.tolist(), "k": k.tolist(), "text": ["a", "b"]}})
    assert status == 200 and set(answer["outputs"]) == {"sum", "neg", "text_bytes"}
    np.testing.assert_array_equal(np.asarray(answer["outputs"]["sum"], np.float32), want["sum"])
    assert answer["outputs"]["text_bytes"] == [{"b64": "YQ=="}, {"b64": "Yg=="}]


@pytest.mark.parametrize(("path", "payload", "status", "match"), [
    ("nope:predict", {"instances": [1]}, 404, "unknown model 'nope'; this server serves: digits, two"),
    ("digits/versions/9:predict", {"instances": [1]}, 404, "has no version 9; versions: 1, 2"),
    ("digits/versions/x1:predict", {"instances": [1]}, 404, "a version is a positive integer"),
    ("digits/labels/beta:predict", {"instances": [1]}, 404, "has no label 'beta'; labels: "),
    ("digits:predict", {"instances": [[[[0.0] * 7] * 8]]}, 400, "input 'images'"),
    ("digits:predict", {"inputs": {"pixels": [[[[0.0] * 8] * 8]]}}, 400, "pixels"),
    ("digits:predict", {"instances": [[[[0.0] * 8] * 8]], "inputs": []}, 400, "not both"),
    ("digits:predict", {"signature_name": "classify"}, 400, "neither"),
    ("digits:predict", {"signature_name": "x", "inputs": [1.0]}, 400, 'signature name: "x" not found'),
    ("digits:predict", {"instances": []}, 400, "non-empty list"),
    ("digits:predict", {"instances": [[1, 2], [3]]}, 400, "ragged"),
    ("digits:predict", {"instances": [["a", 1.0]]}, 400, "strings mixed with numbers"),
    ("digits:predict", {"instances": [None]}, 400, "got null"),
    ("digits:predict", {"instances": [{"b64": "%%%"}]}, 400, "no valid base64"),
    ("digits:predict", {"instances": [10**400]}, 400, "outside the 64-bit range"),
    ("digits:predict", {"instances": [[[["a"] * 8] * 8]]}, 400,
     "input 'images': got object array, expected float32"),
    ("digits:predict", {"inputs": json.loads("[" * 40 + "1" + "]" * 40)}, 400,
     "more than 32 levels"),
    ("two:predict", {"instances": [1.0]}, 400, "the model has 3 inputs ('x', 'k', 'text')"),
    ("two:predict", {"instances": [{"x": [1, 2, 3]}, {"k": [1, 2, 3]}]}, 400, "names the same inputs"),
    ("two:predict", {"instances": [{"x": [1.0, 2, 3], "k": [1, 2, 3], "text": "a"}, 3]}, 400, "mixes"),
    ("two:predict", {"inputs": {"x": [[1.5, 2, 3]], "k": [[1.5, 2, 3]], "text": ["a"]}}, 400,
     "input 'k': got float64 array"),
])
def test_errors_are_error_bodies_with_the_status_table(server: Server, digits: Any, path: str,
                                                       payload: Any, status: int, match: str) -> None:
    got, answer = predict(f"{server.url}/v1/models/{path}", payload)
    assert got == status and set(answer) == {"error"} and match in answer["error"], answer
    test_predict_row_and_columnar_on_digits(server, digits)  # still answering right


def test_input_mismatch_message_is_the_in_process_one(server: Server) -> None:
    bad = np.zeros((1, 1, 8, 7), np.float32)
    with pytest.raises(dk.InputMismatch) as raised:
        dk.load(MODEL_PATH, backend="onnxruntime").run({"images": bad})
    got, answer = predict(f"{server.url}/v1/models/digits:predict", {"instances": bad.tolist()})
    assert got == 400 and answer == {"error": str(raised.value)}


def test_status_and_metadata_errors(server: Server) -> None:
    assert call(f"{server.url}/v1/models/nope")[0] == 404
    assert call(f"{server.url}/v1/models/digits/versions/3")[0] == 404
    assert call(f"{server.url}/v1/models/digits/versions/0/metadata")[0] == 404
    status, answer = call(f"{server.url}/v1/models/digits/labels/nope/metadata")
    assert status == 404 and "no label 'nope'" in answer["error"]


def test_other_verbs_and_paths_get_error_bodies(server: Server) -> None:
    for path in ("digits:classify", "digits:regress", "digits/versions/1/extra", "digits"):
        status, answer = predict(f"{server.url}/v1/models/{path}", {"examples": [{"x": 1.0}]})
        assert status == 400 and answer["error"].startswith("Malformed request: POST"), (path, answer)
    status, answer = call(f"{server.url}/v1/models/digits/versions/1/metadata/more")
    assert status == 400 and "Malformed request: GET" in answer["error"]


def test_malformed_json_is_400(server: Server) -> None:
    url = f"{server.url}/v1/models/digits:predict"
    for body in (b"{", b"[]", b"\xff\xfe", b"[" * 100_000, b'{"instances": [1,]}'):
        status, answer = call(url, body, {"Content-Type": "application/json"})
        assert status == 400 and "error" in answer, (body[:20], answer)
    status, answer = call(url, b"{}", {"Content-Encoding": "gzip"})  # says gzip, is not
    assert status == 400 and "the gzip request body does not decompress" in answer["error"]
    status, answer = call(url, b"{}", {"Content-Encoding": "br"})
    assert status == 400 and "Content-Encoding 'br' is not supported" in answer["error"]


def test_limits_are_413(repo: Path) -> None:
    with serving(repo, max_body_bytes=1000, max_elements=100) as small:
        url = f"{small.url}/v1/models/digits:predict"
        status, answer = call(url, b"{" + b" " * 5000 + b"}", {"Content-Type": "application/json"})
        assert status == 413 and "over the limit of 1000" in answer["error"]
        status, answer = predict(url, {"instances": [[[[0] * 8] * 8]] * 2})  # 128 elements
        assert status == 413 and "more than 100 elements" in answer["error"], answer
        status, answer = predict(url, {"instances": [[[[0] * 8] * 8]]})  # 64: within the limit
        assert status == 200 and len(answer["predictions"]) == 1
