"""deploykit serve, end to end on the loopback: a real uvicorn server in this process, real clients
(plain HTTP as the KServe v2 documentation shows, and tritonclient with its default arguments)."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from deploykit.serve import Server
from tests._support.serving import call, digits_repository


def post_json(url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = call(url, json.dumps(payload).encode(), {"Content-Type": "application/json",
                                                               **(headers or {})})
    return status, json.loads(body)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """repo/digits/1 and repo/digits/2 (the same bundled model twice), with all versions served."""
    return digits_repository(tmp_path_factory.mktemp("repo"), config={"version_policy": {"all": True}})


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with Server(repo, port=0) as running:
        yield running


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_test_data()
    want = dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images[:4]})
    return images[:4], want["probabilities"]


def test_health_and_metadata(server: Server) -> None:
    assert call(f"{server.url}/v2/health/live")[0] == 200
    status, _, body = call(f"{server.url}/v2/health/ready")
    assert status == 200 and json.loads(body) == {"ready": True}
    meta = json.loads(call(f"{server.url}/v2")[2])
    assert meta["name"] == "deploykit" and "binary_tensor_data" in meta["extensions"]
    model = json.loads(call(f"{server.url}/v2/models/digits")[2])
    assert model["name"] == "digits" and model["versions"] == ["1", "2"]
    assert model["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert [o["name"] for o in model["outputs"]] == ["probabilities", "label"]
    assert call(f"{server.url}/v2/models/digits/versions/1/ready")[0] == 200
    config = json.loads(call(f"{server.url}/v2/models/digits/config")[2])
    assert config["input"][0] == {"name": "images", "data_type": "TYPE_FP32", "dims": [-1, 1, 8, 8]}


def test_infer_json_as_the_protocol_documents_it(server: Server, digits: Any) -> None:
    images, want = digits
    payload = {"id": "r-1", "inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32",
                                        "data": images.ravel().tolist()}]}
    status, answer = post_json(f"{server.url}/v2/models/digits/infer", payload)
    assert status == 200, answer
    assert answer["id"] == "r-1" and answer["model_name"] == "digits" and answer["model_version"] == "2"
    out = {o["name"]: o for o in answer["outputs"]}
    got = np.asarray(out["probabilities"]["data"], np.float32).reshape(out["probabilities"]["shape"])
    np.testing.assert_array_equal(got, want)
    status, answer = post_json(f"{server.url}/v2/models/digits/versions/1/infer",
                               {**payload, "outputs": [{"name": "label"}]})
    assert status == 200 and answer["model_version"] == "1"
    assert [o["name"] for o in answer["outputs"]] == ["label"]


def test_infer_gzip_body(server: Server, digits: Any) -> None:
    images, want = digits
    payload = {"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32",
                           "data": images.ravel().tolist()}]}
    body = gzip.compress(json.dumps(payload).encode())
    status, _, raw = call(f"{server.url}/v2/models/digits/infer", body,
                          {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200, raw
    out = {o["name"]: o for o in json.loads(raw)["outputs"]}
    np.testing.assert_array_equal(np.asarray(out["probabilities"]["data"], np.float32).reshape(4, 10), want)


def test_tritonclient_with_its_defaults(server: Server, digits: Any) -> None:
    """tritonclient sends binary tensors by default, without a Content-Type, and reads {"error": ...}."""
    http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    images, want = digits
    client = http.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    inp = http.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    result = client.infer("digits", [inp])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), want)
    assert client.get_model_config("digits")["name"] == "digits"
    with pytest.raises(Exception, match="unknown model 'nope'"):
        client.infer("nope", [inp])


@pytest.mark.parametrize(("path", "payload", "status", "match"), [
    ("/v2/models/nope/infer", {"inputs": []}, 404, "unknown model 'nope'; this server serves: digits"),
    ("/v2/models/digits/versions/9/infer", {"inputs": []}, 404, "has no version '9'"),
    ("/v2/models/digits/infer", {"inputs": [{"name": "images", "shape": [1, 1, 8, 7], "datatype": "FP32",
                                             "data": [0.0] * 56}]}, 400, "input 'images'"),
    ("/v2/models/digits/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                             "data": [0.0]}]}, 400, "unknown input"),
])
def test_errors_are_protocol_bodies_and_the_server_stays_up(server: Server, digits: Any, path: str,
                                                            payload: Any, status: int, match: str) -> None:
    got, answer = post_json(server.url + path, payload)
    assert got == status and set(answer) == {"error"} and match in answer["error"], answer
    test_infer_json_as_the_protocol_documents_it(server, digits)  # still answering right


def test_malformed_bodies_get_400_not_500(server: Server) -> None:
    url = f"{server.url}/v2/models/digits/infer"
    for body in (b"{", b"[]", b'{"inputs": 3}', b"\xff\xfe", gzip.compress(b"{")):
        status, _, raw = call(url, body, {"Content-Type": "application/json"})
        assert status == 400 and "error" in json.loads(raw), (body, raw)
    status, _, raw = call(url, b"x", {"Content-Encoding": "br"})
    assert status == 400 and "Content-Encoding" in json.loads(raw)["error"]
    assert call(f"{server.url}/v2/health/live")[0] == 200


def test_oversized_body_is_413(repo: Path) -> None:
    with Server(repo, port=0, max_body_bytes=1000) as small:
        status, _, raw = call(f"{small.url}/v2/models/digits/infer", b"{" + b" " * 5000 + b"}",
                              {"Content-Type": "application/json"})
        assert status == 413 and "over the limit of 1000" in json.loads(raw)["error"]
        bomb = gzip.compress(b" " * 10**6)  # 1 KB on the wire, 1 MB inflated
        status, _, raw = call(f"{small.url}/v2/models/digits/infer", bomb, {"Content-Encoding": "gzip"})
        assert status == 413, raw


def test_server_arguments_are_checked() -> None:
    with pytest.raises(dk.InvalidArgument, match="port must be"):
        Server(MODEL_PATH, port=70000)
    with pytest.raises(dk.InvalidArgument, match="max_body_bytes"):
        Server(MODEL_PATH, max_body_bytes=0)


def test_cli_serves_one_model_file_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "serve", str(MODEL_PATH), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("deploykit serve: http://127.0.0.1:"), (line, proc.stderr.read() if
                                                                       proc.poll() is not None else "")
        url = line.split()[2]
        model = json.loads(call(f"{url}/v2/models/digits")[2])  # named after the file
        assert model["name"] == "digits" and model["versions"] == ["1"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
