"""Online serving on a real local Ray Serve (2 replicas of 1 CPU): KServe v2 (JSON and tritonclient's
binary), TF Serving REST, versions, dynamic batching and error bodies answer as ``deploykit serve``
answers, through Ray's HTTP proxy on the loopback; every replica's metrics reach Ray's metrics export;
a repository that does not load fails the deployment with the reason. ~60 s (Ray's start-up, two
replicas, the metrics export's reporting interval)."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data
from tests import models
from tests._support.serving import call, digits_repository

ray = pytest.importorskip("ray", reason="the ray extra (ray[serve]) is not installed")
serve = pytest.importorskip("ray.serve", reason="the ray extra (ray[serve]) is not installed")
pytestmark = pytest.mark.slow

BATCHING = {"version_policy": {"all": True}, "batching": {"max_batch_size": 32, "max_queue_delay_ms": 2}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local Ray with Serve on a free loopback port and Ray's metrics on another; the digits
    repository (versions 1 and 2, dynamic batching) deployed on 2 replicas of 1 CPU each (Ray's
    third CPU is for the replica of the broken repository, which must fail, not wait for a CPU)."""
    metrics_port, http_port = free_port(), free_port()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _metrics_export_port=metrics_port, _system_config={"metrics_report_interval_ms": 1000})
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    repo = digits_repository(tmp_path_factory.mktemp("repo"), config=BATCHING)
    shutil.copytree(repo / "digits", repo / "load")  # only the load test sends to it: its counts are its own
    serve.run(dk.ray.deployment(repo, num_replicas=2), name="digits", route_prefix="/")
    try:
        yield {"url": f"http://127.0.0.1:{http_port}", "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    images = load_test_data()[0][:4]
    return images, dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})


def infer_json(url: str, images: np.ndarray, version: str = "", model: str = "digits") -> tuple[int, Any]:
    path = f"/v2/models/{model}{f'/versions/{version}' if version else ''}/infer"
    payload = {"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32",
                           "data": images.ravel().tolist()}]}
    status, _, body = call(url + path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def test_kserve_v2_json_and_versions(cluster: dict[str, Any], digits: Any) -> None:
    images, want = digits
    assert json.loads(call(cluster["url"] + "/v2/health/ready")[2]) == {"ready": True}
    meta = json.loads(call(cluster["url"] + "/v2/models/digits")[2])
    assert meta["versions"] == ["1", "2"] and meta["inputs"][0]["shape"] == [-1, 1, 8, 8]
    for version, served in (("", "2"), ("1", "1")):
        status, answer = infer_json(cluster["url"], images, version)
        assert status == 200 and answer["model_version"] == served, answer
        out = {o["name"]: o for o in answer["outputs"]}
        np.testing.assert_array_equal(np.asarray(out["probabilities"]["data"], np.float32).reshape(4, 10),
                                      want["probabilities"])
        assert out["label"]["data"] == want["label"].tolist()


def test_tritonclient_binary_tensors(cluster: dict[str, Any], digits: Any) -> None:
    http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    images, want = digits
    client = http.InferenceServerClient(cluster["url"].removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("digits", "1")
    inp = http.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    result = client.infer("digits", [inp], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("probabilities"), want["probabilities"])
    with pytest.raises(Exception, match="unknown model 'nope'"):
        client.infer("nope", [inp])


def test_tf_serving_rest_as_its_docs_show(cluster: dict[str, Any], digits: Any) -> None:
    images, want = digits
    body = json.dumps({"instances": images.tolist()}).encode()
    status, _, raw = call(cluster["url"] + "/v1/models/digits:predict", body)
    assert status == 200, raw
    rows = json.loads(raw)["predictions"]
    np.testing.assert_allclose(np.asarray([r["probabilities"] for r in rows], np.float32),
                               want["probabilities"], rtol=1e-6)
    status, _, raw = call(cluster["url"] + "/v1/models/digits/versions/1")
    assert status == 200 and json.loads(raw)["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize(("path", "payload", "status", "match"), [
    ("/v2/models/nope/infer", {"inputs": []}, 404, "unknown model 'nope'"),
    ("/v2/models/digits/versions/9/infer", {"inputs": []}, 404, "has no version '9'"),
    ("/v2/models/digits/infer", {"inputs": [{"name": "images", "shape": [1, 1, 8, 7], "datatype": "FP32",
                                             "data": [0.0] * 56}]}, 400, "input 'images'"),
    ("/v1/models/digits:predict", {"instances": [1, 2]}, 400, "input 'images'"),
])
def test_bad_requests_get_the_protocol_s_error_body(cluster: dict[str, Any], digits: Any, path: str,
                                                     payload: Any, status: int, match: str) -> None:
    got, _, raw = call(cluster["url"] + path, json.dumps(payload).encode(),
                       {"Content-Type": "application/json"})
    answer = json.loads(raw)
    assert got == status and set(answer) == {"error"} and match in answer["error"], answer
    assert infer_json(cluster["url"], digits[0])[0] == 200  # still answering


def test_concurrent_requests_are_answered_right_and_counted_on_every_replica(
        cluster: dict[str, Any], digits: Any) -> None:
    """64 requests from 16 clients, each answer its own; Ray's metrics export then counts them all,
    across both replicas, with the batches they formed."""
    images = load_test_data()[0][:64]
    want = dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})["label"]

    def one(k: int) -> int:
        status, answer = infer_json(cluster["url"], images[k:k + 1], "1", model="load")
        assert status == 200, answer
        return int(answer["outputs"][1]["data"][0])

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(64))) == want.tolist()
    deadline = time.monotonic() + 90  # each node's agent exports what workers report every second
    while sum((now := counted(cluster["metrics"], "ray_deploykit_requests_total", model="load")).values()) \
            < 64 and time.monotonic() < deadline:
        time.sleep(1)
    assert sum(now.values()) == 64, now
    assert len(now) == 2, f"requests counted on {len(now)} replica(s): {now}"  # both replicas served
    batches = counted(cluster["metrics"], "ray_deploykit_batch_size_count", model="load")
    assert sum(batches.values()) >= 1


def heavy_repository(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """``root/heavy/1``: ``models.matmul_chain()`` (~20 ms a run on one AVX2 core, several ms on
    AVX-512: a burst of requests outruns one replica on any machine); an input and its output."""
    (root / "heavy" / "1").mkdir(parents=True)
    path = root / "heavy" / "1" / "model.onnx"
    onnx.save(models.matmul_chain(), str(path))
    x = np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)
    return root, x, dk.load(path, backend="onnxruntime", threads=1).run({"x": x})["y"]


@pytest.mark.parametrize(("bounds", "ray_answers"), [
    ({"max_queue": 2}, False),  # the replica's bound (max_ongoing_requests at its default, 128)
    ({"max_ongoing_requests": 1, "max_queued_requests": 1}, True),  # Ray's bound comes first
], ids=["replica-bound", "ray-bound"])
def test_a_burst_past_the_bounds_is_503_and_every_request_taken_is_answered_right(
        cluster: dict[str, Any], tmp_path: Path, bounds: dict[str, int], ray_answers: bool) -> None:
    """32 requests at once from 16 clients on one replica of a 20 ms model: those past the bound get
    503 — in the protocol's body with Retry-After when the replica answers (as ``deploykit serve``
    does), in Ray's plain text when Ray's proxy does — the others the right answer; it serves on."""
    repo, x, want = heavy_repository(tmp_path)
    serve.run(dk.ray.deployment(repo, name="burst", num_cpus=0.5, **bounds), name="burst",
              route_prefix="/burst")  # half a CPU: the fixture's spare one may still be held
    body = json.dumps({"inputs": [{"name": "x", "shape": [64, 512], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    url = f"{cluster['url']}/burst/v2/models/heavy/infer"
    try:
        headers = {"Content-Type": "application/json"}
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: call(url, body, headers), range(32)))
        statuses = [status for status, _, _ in answers]
        assert set(statuses) == {200, 503}, statuses
        for status, sent, raw in answers:
            head = {k.lower(): v for k, v in sent.items()}
            if status == 200:
                output = np.asarray(json.loads(raw)["outputs"][0]["data"], np.float32).reshape(64, 512)
                np.testing.assert_allclose(output, want, rtol=1e-5, atol=1e-5)
            elif ray_answers:
                assert head["content-type"].startswith("text/plain") and "retry-after" not in head
                assert raw.startswith(b"Request dropped due to backpressure"), raw
            else:
                assert head["content-type"] == "application/json" and head["retry-after"] == "1"
                assert "queued or running (its limit)" in json.loads(raw)["error"], raw
        assert call(url, body, headers)[0] == 200  # serves on
    finally:
        serve.delete("burst")


def counted(url: str, family: str, **labels: str) -> dict[str, float]:
    """Replica -> the sum of ``family``'s samples with ``labels`` (and outcome ok where it has one)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(family + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        tags = dict(part.split("=", 1) for part in head[len(family) + 1:-1].split('",') if "=" in part)
        tags = {k: v.strip('"') for k, v in tags.items()}
        if all(tags.get(k) == v for k, v in labels.items()) and tags.get("outcome", "ok") == "ok":
            totals[tags["replica"]] = totals.get(tags["replica"], 0.0) + float(value)
    return totals


def test_a_repository_that_does_not_load_fails_the_deployment_with_its_reason(
        cluster: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="Deploying application broken failed"):
        serve.run(dk.ray.deployment(tmp_path, name="broken"), name="broken", route_prefix="/broken")
    message = serve.status().applications["broken"].deployments["broken"].message
    assert "the replica cannot serve" in message and "not a valid ONNX file" in message
    serve.delete("broken")
    assert infer_json(cluster["url"], load_test_data()[0][:1])[0] == 200  # the other app is untouched


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"repository_api": True}, "a load or an unload would reach one replica of many"),
    ({"nonsense": 1}, "does not take nonsense"),
    ({"num_replicas": 0}, "num_replicas"),
    ({"num_replicas": 2, "autoscaling_config": {"max_replicas": 3}}, "give one of them"),
    ({"autoscaling_config": 3}, "autoscaling_config must be a mapping"),
    ({"num_cpus": 0}, "num_cpus"),
    ({"max_ongoing_requests": 0}, "max_ongoing_requests"),
    ({"max_queued_requests": 0}, "max_queued_requests"),
    ({"max_body_bytes": -1}, "max_body_bytes"),
    ({"name": ""}, "name must be"),
    ({"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}, "Ray Serve refused"),
    ({"deployment_options": 3}, "deployment_options must map"),
    ({"ray_actor_options": {1: 2}}, "ray_actor_options must map"),
    ({"deployment_options": {"no_such_option": 1}}, "Ray Serve refused"),
    ({"deployment_options": {"num_replicas": 5}}, "deployment_options sets num_replicas: give that as"),
    ({"ray_actor_options": {"num_cpus": 4}}, "ray_actor_options sets num_cpus"),
    ({"autoscaling_config": {"max_replica": 4}}, "autoscaling_config has no key.s. max_replica"),
])
def test_bad_options_are_refused_before_any_replica_starts(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.ray.deployment(MODEL_PATH, **kwargs)


def test_a_repository_that_is_not_there_is_refused(tmp_path: Path) -> None:
    with pytest.raises(dk.DeployKitError, match="missing"):
        dk.ray.deployment(tmp_path / "missing")
    with pytest.raises(dk.InvalidArgument, match="repository must be a path"):
        dk.ray.deployment(3)
