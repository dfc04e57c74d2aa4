"""Metrics (``deploykit.serve.metrics``) and the request middleware (``deploykit.serve.middleware``):
the counters on their own, then both on a real uvicorn server on the loopback, read with urllib."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus-client) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from deploykit.errors import InvalidArgument
from deploykit.serve import metrics as metrics_module
from deploykit.serve.asgi import App, Request, Response, Route, json_response
from deploykit.serve.metrics import CONTENT_TYPE, OUTCOMES, Metrics, outcome_of
from deploykit.serve.middleware import (
    AccessMiddleware,
    current_request_id,
    token_from_env,
    token_from_file,
    valid_request_id,
)
from tests._support.serving import Running

TOKEN = "s3cret-Token_value.42"


# -- helpers -------------------------------------------------------------------------------------
def samples(metrics: Metrics, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value for one family of the exposition."""
    found = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        if fam.name == family:
            for s in fam.samples:
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(metrics: Metrics, family: str, sample: str, **labels: str) -> float | None:
    return samples(metrics, family).get((sample, tuple(sorted(labels.items()))))


def call(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body); an HTTP error status is a result, not an exception."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def make_app(metrics: Metrics, **middleware: Any) -> App:
    """Health, a model-ish endpoint that records metrics, an echo of the request id, a failure."""

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def infer(request: Request) -> Response:
        start = time.perf_counter()
        name, status = request.path_params["name"], int(request.path_params.get("status", "200"))
        with metrics.inflight(name):
            metrics.observe_batch(name, 1, 1)
        metrics.observe_request(name, 1, "kserve", outcome_of(status), time.perf_counter() - start,
                                queue_s=0.00002, compute_s=0.0003)
        return json_response({"model": name}, status)

    async def echo(request: Request) -> Response:
        return json_response({"state": request.state.request_id, "context": current_request_id()})

    async def boom(request: Request) -> Response:
        raise RuntimeError("a handler bug")

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), 200, CONTENT_TYPE)

    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", live),
              Route("/v2/models/{name}/infer", infer), Route("/v2/models/{name}/infer/{status}", infer),
              Route("/echo", echo), Route("/boom", boom), Route("/metrics", metrics_endpoint)]

    def not_found(request: Request, status: int, allowed: list[str]) -> Response:
        return json_response({"error": "no such endpoint"}, status)

    return App(routes, not_found, middleware=[(AccessMiddleware, middleware)])


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(metrics, **middleware_options)`` -> a running server, stopped after the test."""
    running: list[Running] = []

    def start(metrics: Metrics | None = None, **options: Any) -> Running:
        running.append(Running(make_app(metrics or Metrics(), **options)))
        return running[-1]

    yield start
    for server in running:
        server.stop()


def access_records(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The access-log records, waiting briefly: the line is written after the answer is sent."""
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in caplog.records if r.name == "deploykit.serve.access"]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


# -- the metrics on their own ----------------------------------------------------------------------
def test_requests_latency_batches_inflight_and_loads_are_exposed() -> None:
    m = Metrics(process=False)
    m.observe_request("digits", 1, "kserve", "ok", 0.0004, queue_s=0.0001, compute_s=0.0002)
    m.observe_request("digits", 1, "kserve", "rejected", 0.00005)
    m.observe_request("digits", "2", "tfserving", "client_error", 12.0)
    m.observe_batch("digits", 1, 3)
    m.observe_load("digits", 1, 0.25, ok=True)
    m.observe_load("digits", 2, 9.0, ok=False)
    m.observe_load("digits", 3, 9.0, ok=False)
    v1 = {"model": "digits", "version": "1", "protocol": "kserve"}
    total = "deploykit_requests"
    assert value(m, total, "deploykit_requests_total", **v1, outcome="ok") == 1
    assert value(m, total, "deploykit_requests_total", **v1, outcome="rejected") == 1
    assert value(m, total, "deploykit_requests_total", **v1, outcome="server_error") == 0
    assert value(m, total, "deploykit_requests_total", model="digits", version="2", protocol="tfserving",
                 outcome="client_error") == 1
    duration = "deploykit_request_duration_seconds"
    assert value(m, duration, f"{duration}_count", **v1) == 2
    assert value(m, duration, f"{duration}_sum", **v1) == pytest.approx(0.00045)
    assert value(m, duration, f"{duration}_bucket", **v1, le="0.0001") == 1  # 0.05 ms
    assert value(m, duration, f"{duration}_bucket", **v1, le="0.0005") == 2
    # queue and compute only counted when given; 12 s lands in +Inf only
    assert value(m, "deploykit_request_queue_seconds", "deploykit_request_queue_seconds_count", **v1) == 1
    assert value(m, "deploykit_request_queue_seconds", "deploykit_request_queue_seconds_bucket", **v1,
                 le="0.0001") == 1  # le is inclusive
    assert value(m, "deploykit_request_compute_seconds", "deploykit_request_compute_seconds_sum",
                 **v1) == pytest.approx(0.0002)
    v2 = {"model": "digits", "version": "2", "protocol": "tfserving"}
    assert value(m, duration, f"{duration}_bucket", **v2, le="10.0") == 0
    assert value(m, duration, f"{duration}_bucket", **v2, le="+Inf") == 1
    assert value(m, "deploykit_batch_size", "deploykit_batch_size_bucket", model="digits", version="1",
                 le="2.0") == 0
    assert value(m, "deploykit_batch_size", "deploykit_batch_size_bucket", model="digits", version="1",
                 le="4.0") == 1
    assert value(m, "deploykit_model_load_seconds", "deploykit_model_load_seconds", model="digits",
                 version="1") == 0.25
    assert value(m, "deploykit_model_load_failures", "deploykit_model_load_failures_total",
                 model="digits") == 2
    inflight = ("deploykit_requests_in_flight", "deploykit_requests_in_flight")
    with m.inflight("digits"), m.inflight("digits"):
        assert value(m, *inflight, model="digits") == 2
    assert value(m, *inflight, model="digits") == 0


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_request("m", 1, "kserve", "ok", 0.001)
    assert value(a, "deploykit_requests", "deploykit_requests_total", model="m", version="1",
                 protocol="kserve", outcome="ok") == 1
    assert not samples(b, "deploykit_requests")
    assert b"deploykit_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    assert b"process_cpu_seconds_total" in a.exposition() or os.name != "posix"
    assert b"process_cpu_seconds_total" not in Metrics(process=False).exposition()


def test_outcomes_and_their_statuses() -> None:
    assert [outcome_of(s) for s in (200, 204, 400, 404, 413, 429, 503, 500, 504)] == [
        "ok", "ok", "client_error", "client_error", "client_error", "rejected", "rejected",
        "server_error", "server_error"]
    assert set(map(outcome_of, range(100, 600))) == set(OUTCOMES)
    with pytest.raises(InvalidArgument, match=r"outcome must be one of ok, .*got 'fine'"):
        Metrics().observe_request("m", 1, "kserve", "fine", 0.001)


def test_label_sets_are_capped_and_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_LABEL_SETS", 3)
    m = Metrics(process=False)
    for i in range(10):  # e.g. model names a client made up
        m.observe_request(f"made-up-{i}", 1, "kserve", "client_error", 0.001)
    found = samples(m, "deploykit_requests")
    assert len({dict(labels)["model"] for _, labels in found}) == 4
    assert value(m, "deploykit_requests", "deploykit_requests_total", model="_other", version="_other",
                 protocol="_other", outcome="client_error") == 7
    m.forget("made-up-0", 1)
    assert value(m, "deploykit_requests", "deploykit_requests_total", model="made-up-0", version="1",
                 protocol="kserve", outcome="client_error") is None


def test_counts_are_exact_from_many_threads() -> None:
    m = Metrics(process=False)
    per_thread, threads = 5000, 8

    def work() -> None:
        for _ in range(per_thread):
            with m.inflight("digits"):
                m.observe_request("digits", 1, "kserve", "ok", 0.001, 0.0001, 0.0005)
            m.observe_batch("digits", 1, 2)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    labels = {"model": "digits", "version": "1", "protocol": "kserve"}
    assert value(m, "deploykit_requests", "deploykit_requests_total", **labels, outcome="ok") == 40000
    assert value(m, "deploykit_request_compute_seconds", "deploykit_request_compute_seconds_count",
                 **labels) == 40000
    assert value(m, "deploykit_batch_size", "deploykit_batch_size_count", model="digits",
                 version="1") == 40000
    assert value(m, "deploykit_requests_in_flight", "deploykit_requests_in_flight", model="digits") == 0


# -- served: /metrics, request ids, the access log, the token ----------------------------------------
def test_metrics_route_after_requests(serve: Any) -> None:
    m = Metrics()
    server = serve(m)
    for status in (200, 200, 400, 503):
        call(f"{server.url}/v2/models/digits/infer/{status}")
    status, headers, body = call(f"{server.url}/metrics")
    assert status == 200 and headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    assert "x-request-id" in headers
    text = body.decode()
    for family in ("deploykit_requests_total", "deploykit_request_duration_seconds_bucket",
                   "deploykit_request_queue_seconds_bucket", "deploykit_request_compute_seconds_bucket",
                   "deploykit_batch_size_bucket", "deploykit_requests_in_flight"):
        assert family in text
    labels = {"model": "digits", "version": "1", "protocol": "kserve"}
    assert value(m, "deploykit_requests", "deploykit_requests_total", **labels, outcome="ok") == 2
    assert value(m, "deploykit_requests", "deploykit_requests_total", **labels, outcome="client_error") == 1
    assert value(m, "deploykit_requests", "deploykit_requests_total", **labels, outcome="rejected") == 1
    assert value(m, "deploykit_batch_size", "deploykit_batch_size_count", model="digits", version="1") == 4
    assert call(f"{server.url}/metrics")[2].count(b"deploykit_requests_total{") == 4  # scrape again


def test_request_id_echoed_generated_and_replaced(serve: Any) -> None:
    server = serve()
    status, headers, body = call(f"{server.url}/echo", {"X-Request-ID": "client-id-42"})
    assert status == 200 and headers["x-request-id"] == "client-id-42"
    assert json.loads(body) == {"state": "client-id-42", "context": "client-id-42"}
    made = {call(f"{server.url}/echo")[1]["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(valid_request_id(r.encode()) for r in made)
    for bad in ("x" * 129, "has space", "tab\there", "é"):
        _, headers, body = call(f"{server.url}/echo", {"X-Request-ID": bad.encode().decode("latin-1")})
        assert headers["x-request-id"] != bad and valid_request_id(headers["x-request-id"].encode())
        assert json.loads(body)["state"] == headers["x-request-id"]
    longest = "a" * 128
    assert call(f"{server.url}/echo", {"X-Request-ID": longest})[1]["x-request-id"] == longest
    assert current_request_id() is None  # nothing leaks out of a request


def test_access_log_plain(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deploykit.serve.access")
    server = serve()
    call(f"{server.url}/echo", {"X-Request-ID": "plain-1"})
    call(f"{server.url}/v2/models/digits/infer/404")
    call(f"{server.url}/boom")
    records = access_records(caplog, 3)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("GET /echo 200 ") and " ms id=plain-1 client=127.0.0.1:" in lines[0]
    assert lines[1].startswith("GET /v2/models/digits/infer/404 404 ")
    assert lines[2].startswith("GET /boom 500 ")  # a handler's exception is logged as the 500 it became
    assert all(r.levelno == logging.INFO for r in records)


def test_access_log_json_lines(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deploykit.serve.access")
    server = serve(json_logs=True)
    call(f"{server.url}/echo", {"X-Request-ID": "json-1"})
    (record,) = access_records(caplog, 1)
    line = json.loads(record.getMessage())
    assert line["method"] == "GET" and line["path"] == "/echo" and line["status"] == 200
    assert line["request_id"] == "json-1" and line["client"].startswith("127.0.0.1:")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_access_log_path_cannot_inject_lines(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deploykit.serve.access")
    server = serve()
    call(f"{server.url}/echo%0AFAKE%20200")
    (record,) = access_records(caplog, 1)
    assert "\n" not in record.getMessage() and "/echo%0AFAKE%20200 404" in record.getMessage()


def test_no_access_log_when_info_is_off(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="deploykit.serve.access")
    server = serve()
    assert call(f"{server.url}/echo")[0] == 200
    time.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "deploykit.serve.access"]


def test_bearer_token(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(token=TOKEN)
    status, headers, body = call(f"{server.url}/echo")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert "bearer token" in json.loads(body)["error"] and "x-request-id" in headers
    assert call(f"{server.url}/echo", {"Authorization": f"Basic {TOKEN}"})[0] == 401
    status, headers, body = call(f"{server.url}/echo", {"Authorization": "Bearer wrong"})
    assert status == 403 and "not valid" in json.loads(body)["error"]
    assert call(f"{server.url}/echo", {"Authorization": f"Bearer {TOKEN}x"})[0] == 403
    assert call(f"{server.url}/echo", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert call(f"{server.url}/echo", {"Authorization": f"bearer {TOKEN}"})[0] == 200
    assert call(f"{server.url}/v2/health/live")[0] == 200  # orchestrators probe without credentials
    assert call(f"{server.url}/v2/health/ready")[0] == 200
    assert call(f"{server.url}/metrics")[0] == 401  # metrics need the token unless made public
    assert call(f"{server.url}/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    access_records(caplog, 10)
    assert TOKEN not in caplog.text


def test_metrics_made_public(serve: Any) -> None:
    server = serve(token=TOKEN, public_paths=["/v2/health/live", "/v2/health/ready", "/metrics"])
    assert call(f"{server.url}/metrics")[0] == 200
    assert call(f"{server.url}/echo")[0] == 401


def not_found_app(request: Request, status: int, allowed: list[str]) -> Response:
    return Response(b"", status)


def test_middleware_refuses_an_unusable_token_and_hides_it() -> None:
    with pytest.raises(InvalidArgument, match="non-empty"):
        AccessMiddleware(App([], not_found_app), token="")
    with pytest.raises(InvalidArgument, match="without spaces") as raised:
        AccessMiddleware(App([], not_found_app), token="two words")
    assert "two words" not in str(raised.value)
    assert TOKEN not in repr(AccessMiddleware(App([], not_found_app), token=TOKEN))


def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DK_TEST_TOKEN", f"  {TOKEN}\n")
    assert token_from_env("DK_TEST_TOKEN") == TOKEN
    monkeypatch.setenv("DK_TEST_TOKEN", "")
    with pytest.raises(InvalidArgument, match="DK_TEST_TOKEN holds no bearer token"):
        token_from_env("DK_TEST_TOKEN")
    monkeypatch.delenv("DK_TEST_TOKEN")
    with pytest.raises(InvalidArgument, match="DK_TEST_TOKEN"):
        token_from_env("DK_TEST_TOKEN")


def test_token_from_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    file.chmod(0o600)
    assert token_from_file(file) == TOKEN
    file.write_bytes(TOKEN.encode() + b"\r\n")
    assert token_from_file(str(file)) == TOKEN
    file.write_text(TOKEN + "\n\n")  # only one newline is dropped: the rest is refused, not hidden
    with pytest.raises(InvalidArgument, match="without spaces or line breaks") as raised:
        token_from_file(file)
    assert TOKEN not in str(raised.value)
    file.write_text("\n")
    with pytest.raises(InvalidArgument, match="is empty"):
        token_from_file(file)
    with pytest.raises(InvalidArgument, match="cannot read the bearer token file"):
        token_from_file(tmp_path / "missing")
    if os.name == "posix":
        file.write_text(TOKEN)
        file.chmod(0o644)
        caplog.set_level(logging.WARNING, logger="deploykit.serve")
        assert token_from_file(file) == TOKEN
        assert "can be read by other users" in caplog.text and TOKEN not in caplog.text
