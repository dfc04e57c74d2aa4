"""The server's own features end to end: dynamic batching under concurrent clients, Prometheus
metrics, the bearer token, request ids, the app mounted under a prefix or in a parent app (real
uvicorn on the loopback, plain HTTP)."""

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
from deploykit.serve.application import app as serve_app
from deploykit.serve.asgi import app_path
from tests._support.serving import Running, call, digits_repository
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


def test_an_app_mounted_under_a_root_path_routes_below_it(tmp_path: Path) -> None:
    """ASGI's ``path`` holds the ``root_path`` (uvicorn's ``--root-path``, Ray Serve's route prefix):
    the routes and the token's public paths are matched below it."""
    repo = digits_repository(tmp_path, versions=(1,))
    running = Running(serve_app(repo, token="under-token"), root_path="/under")
    try:
        assert call(f"{running.url}/v2/health/ready")[0] == 200  # public: no token needed
        status, _, body = call(f"{running.url}/v2/models/digits",
                               headers={"Authorization": "Bearer under-token"})
        assert status == 200 and json.loads(body)["name"] == "digits"
        assert call(f"{running.url}/v2/models/digits")[0] == 401
    finally:
        running.stop()
    prefix = {"type": "http", "root_path": "/under", "path": "/underground/v2/health/ready"}
    assert app_path(prefix) == "/underground/v2/health/ready"  # a longer name is not under it
    assert app_path({**prefix, "path": "/under"}) == "/"


def test_an_app_mounted_in_a_starlette_parent_serves_once_the_parent_runs_its_lifespan(
        tmp_path: Path) -> None:
    """Starlette's (and FastAPI's) Mount passes no lifespan events to the app it mounts: the parent
    runs ``app.lifespan()`` in its own; without it, the answer says so instead of a bare 503."""
    starlette = pytest.importorskip("starlette.applications",
                                    reason="Starlette (a parent ASGI framework) is not installed")
    from contextlib import asynccontextmanager

    from starlette.routing import Mount

    repo = digits_repository(tmp_path, versions=(1,))
    images = load_test_data()[0][:2]
    want = dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})["label"].tolist()
    models = serve_app(repo)

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        async with models.lifespan():
            yield

    running = Running(starlette.Starlette(routes=[Mount("/models", app=models)], lifespan=lifespan))
    try:
        assert call(f"{running.url}/models/v2/health/ready")[0] == 200
        status, _, body = call(f"{running.url}/models/v2/models/digits/infer", infer_body(images),
                               {"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["outputs"][1]["data"] == want
        status, _, body = call(f"{running.url}/models/v1/models/digits:predict",
                               json.dumps({"instances": images.tolist()}).encode())
        assert status == 200 and [p["label"] for p in json.loads(body)["predictions"]] == want
    finally:
        running.stop()
    running = Running(starlette.Starlette(routes=[Mount("/models", app=serve_app(repo))]))  # no lifespan
    try:
        assert call(f"{running.url}/models/v2/health/ready")[0] == 503
        status, _, body = call(f"{running.url}/models/v2/models/digits/infer", infer_body(images),
                               {"Content-Type": "application/json"})
        assert status == 503 and "the app's startup (ASGI lifespan) has not run" in json.loads(body)["error"]
    finally:
        running.stop()


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
