"""The server's own features end to end: dynamic batching under concurrent clients, Prometheus
metrics, the bearer token, request ids (real uvicorn on the loopback, plain HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
pytest.importorskip("prometheus_client", reason="the serve extra (prometheus-client) is not installed")

from deploykit.serve import Server
from tests._support.serving import call, digits_repository
from tests.concurrency import run_in_threads

CLIENTS = 32


def infer_body(images: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32",
                                   "data": images.ravel().tolist()}]}).encode()


@pytest.fixture
def batched_repo(tmp_path: Path) -> Path:
    return digits_repository(tmp_path, versions=(1,),
                             config={"batching": {"max_batch_size": 32, "max_queue_delay_ms": 2}})


def test_batched_model_answers_each_client_exactly_and_metrics_count(batched_repo: Path) -> None:
    images, _ = load_test_data()
    want = dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})["label"]
    sent = [0] * CLIENTS  # per client: how many of its digits it has sent (only its thread counts)
    with Server(batched_repo, port=0) as server:
        url = f"{server.url}/v2/models/digits/infer"

        def client(k: int) -> str | None:
            i = k + CLIENTS * sent[k]  # each client its own digits: k, k + 32, ...
            sent[k] += 1
            if i >= len(images):
                return None
            status, _, raw = call(url, infer_body(images[i:i + 1]), {"Content-Type": "application/json"})
            out = {o["name"]: o for o in json.loads(raw)["outputs"]} if status == 200 else {}
            if status != 200 or out["label"]["data"] != [int(want[i])]:
                return f"digit {i}: {status} {raw[:200]!r}"
            return None

        results = run_in_threads(client, CLIENTS, -(-len(images) // CLIENTS))
        status, headers, text = call(f"{server.url}/metrics")
    problems = [p for per_client in results for p in per_client if p]
    assert not problems, problems[:3]
    assert status == 200 and headers["content-type"].startswith("text/plain")
    metrics = text.decode()
    ok = [line for line in metrics.splitlines() if line.startswith("deploykit_requests_total") and
          'outcome="ok"' in line and 'model="digits"' in line]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) == len(images), ok
    count = [line for line in metrics.splitlines() if line.startswith("deploykit_batch_size_count")]
    batches = float(count[0].rsplit(" ", 1)[1])
    assert 0 < batches <= len(images)  # each request ran in some batch (fewer when they merged)
    assert "deploykit_request_queue_seconds_bucket" in metrics
    assert "deploykit_model_load_seconds" in metrics


def test_bearer_token_and_request_ids(tmp_path: Path) -> None:
    images, _ = load_test_data()
    body = infer_body(images[:1])
    json_type = {"Content-Type": "application/json"}
    with Server(MODEL_PATH, port=0, token="s3cret-token") as server:
        url = f"{server.url}/v2/models/digits/infer"
        status, headers, raw = call(url, body, json_type)
        assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer")
        assert "error" in json.loads(raw)
        assert call(url, body, {**json_type, "Authorization": "Bearer wrong"})[0] == 403
        status, headers, _ = call(url, body, {**json_type, "Authorization": "Bearer s3cret-token",
                                              "X-Request-ID": "req-42"})
        assert status == 200 and headers["x-request-id"] == "req-42"
        assert call(f"{server.url}/v2/health/ready")[0] == 200  # orchestrators need no token
        assert call(f"{server.url}/metrics")[0] == 401
    with Server(MODEL_PATH, port=0, token="s3cret-token", public_metrics=True) as server:
        assert call(f"{server.url}/metrics")[0] == 200


def test_access_log_names_the_request(caplog: pytest.LogCaptureFixture) -> None:
    images, _ = load_test_data()
    with caplog.at_level("INFO", logger="deploykit.serve.access"), Server(MODEL_PATH, port=0) as server:
        call(f"{server.url}/v2/models/digits/infer", infer_body(images[:1]),
             {"Content-Type": "application/json", "X-Request-ID": "abc-1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "deploykit.serve.access"]
    assert any("/v2/models/digits/infer 200" in line and "id=abc-1" in line for line in lines), lines


def test_a_small_model_gets_one_thread_unless_its_config_says(tmp_path: Path) -> None:
    """A 20 µs model gains nothing from a thread pool and its spinning starves the event loop."""
    from deploykit.hardware import usable_cpus
    from deploykit.serve.dataplane import DataPlane

    plane = DataPlane(digits_repository(tmp_path / "auto", versions=(1,)))
    plane.load_all()
    assert plane.get("digits").engine.info["threads"] == 1
    plane.close()
    if usable_cpus() > 1:
        plane = DataPlane(digits_repository(tmp_path / "two", versions=(1,), config={"threads": 2}))
        plane.load_all()
        assert plane.get("digits").engine.info["threads"] == 2  # the config's word wins
        plane.close()


def test_the_cpus_given_decide_the_threads_of_a_model_worth_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cpus`` (a Ray Serve replica's CPUs) replaces the process's count when the threads are split."""
    from deploykit.serve import dataplane

    # every model is "worth threads" here: whether a run is under SMALL_RUN_S depends on the CPU (a
    # 0.13 GFLOP MatMul was, on 2 AVX-512 cores in CI); that rule has its own test above
    monkeypatch.setattr(dataplane, "SMALL_RUN_S", 0.0)
    repo = digits_repository(tmp_path, versions=(1,))
    for cpus in (1, 2):
        plane = dataplane.DataPlane(repo, cpus=cpus)
        plane.load_all()
        assert plane.get("digits").engine.info["threads"] == cpus
        plane.close()


def test_a_metrics_sink_gets_every_observation_under_the_capped_labels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from deploykit.serve import metrics as metrics_module
    from deploykit.serve.metrics import Metrics

    class Sink:
        def __init__(self) -> None:
            self.seen: list[tuple[Any, ...]] = []

        def request(self, labels: Any, outcome: str, total_s: float, queue_s: Any, compute_s: Any) -> None:
            self.seen.append(("request", list(labels), outcome, total_s, queue_s, compute_s))

        def batch(self, labels: Any, size: int) -> None:
            self.seen.append(("batch", list(labels), size))

        def load(self, labels: Any, seconds: float, ok: bool) -> None:
            self.seen.append(("load", list(labels), seconds, ok))

    monkeypatch.setattr(metrics_module, "MAX_LABEL_SETS", 1)
    metrics, sink = Metrics(process=False), Sink()
    metrics.add_sink(sink)
    metrics.observe_request("digits", 1, "kserve", "ok", 0.5, 0.1, 0.4)
    metrics.observe_request("made-up", 1, "kserve", "client_error", 0.25)  # past the cap
    metrics.observe_batch("digits", 1, 8)
    metrics.observe_load("digits", 2, 1.5, True)
    assert sink.seen == [("request", ["digits", "1", "kserve"], "ok", 0.5, 0.1, 0.4),
                         ("request", ["_other"] * 3, "client_error", 0.25, None, None),
                         ("batch", ["digits", "1"], 8), ("load", ["digits", "2"], 1.5, True)]
