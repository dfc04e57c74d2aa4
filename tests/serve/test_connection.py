"""deploykit's HTTP/1.1 connections (serve/connection.py) over raw sockets: keep-alive, pipelining,
HTTP/1.0, Expect: 100-continue, chunked bodies, HEAD, limits, malformed requests, idle timeouts, a
client that leaves — and a plain ASGI app of someone else's served the same way."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools", reason="the serve extra (httptools) is not installed")
pytest.importorskip("prometheus_client", reason="the serve extra (prometheus-client) is not installed")

from deploykit.demo import MODEL_PATH
from deploykit.serve import Server
from deploykit.serve.connection import MAX_HEAD_BYTES

BODY = json.dumps({"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32",
                               "data": [0.0] * 64}]}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(MODEL_PATH, port=0, keep_alive=1.0) as running:
        yield running


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def infer_request(body: bytes = BODY, extra: str = "", version: str = "1.1") -> bytes:
    return (f"POST /v2/models/digits/infer HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (bytes after it stay in ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response; got {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a body")
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def closed(sock: socket.socket, within: float = 5.0) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_keep_alive_and_pipelined_requests_answer_in_order(server: Server) -> None:
    sock, buffer = connect(server), bytearray()
    for _ in range(3):  # one after the other on one connection
        sock.sendall(infer_request())
        status, headers, body = read_response(sock, buffer)
        assert status == 200 and "connection" not in headers and json.loads(body)["outputs"]
    # five at once, some for other endpoints: answered in the order sent
    burst = b"".join([infer_request(), b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", infer_request(),
                      b"GET /v2/models/nope HTTP/1.1\r\nHost: x\r\n\r\n", infer_request()])
    sock.sendall(burst)
    statuses = [read_response(sock, buffer)[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 404, 200]
    sock.close()


def test_http10_closes_and_connection_close_is_honoured(server: Server) -> None:
    for request in (infer_request(version="1.0"), infer_request(extra="Connection: close\r\n")):
        sock, buffer = connect(server), bytearray()
        sock.sendall(request)
        status, headers, _ = read_response(sock, buffer)
        assert status == 200 and headers.get("connection") == "close"
        assert closed(sock)
        sock.close()


def test_expect_100_continue_and_a_chunked_body(server: Server) -> None:
    sock, buffer = connect(server), bytearray()
    head = (f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    sock.sendall(head)
    status, _, _ = read_response(sock, buffer)
    assert status == 100  # the server asks for the body
    sock.sendall(BODY)
    assert read_response(sock, buffer)[0] == 200
    chunks = [BODY[:10], BODY[10:300], BODY[300:]]
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunked)
    status, _, body = read_response(sock, buffer)
    assert status == 200 and json.loads(body)["outputs"]
    sock.close()


def test_head_has_the_length_but_no_body(server: Server) -> None:
    sock, buffer = connect(server), bytearray()
    sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, get_body = read_response(sock, buffer)
    sock.sendall(b"HEAD /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(2)
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"content-length: {len(get_body)}".encode() in head.lower()
    assert rest == b""
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
    buffer[:] = b""
    assert read_response(sock, buffer)[0] == 200
    sock.close()


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 400),
    (b"POST /v2/models/digits/infer HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET /v2 HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", 431),
])
def test_malformed_or_oversized_requests_get_an_error_body_and_the_connection_closes(
        server: Server, raw: bytes, status: int) -> None:
    sock, buffer = connect(server), bytearray()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may close while we send
        sock.sendall(raw)
    got, headers, body = read_response(sock, buffer)
    assert got == status and "error" in json.loads(body) and headers.get("connection") == "close"
    assert closed(sock)
    sock.close()
    sock, buffer = connect(server), bytearray()  # still serving
    sock.sendall(infer_request())
    assert read_response(sock, buffer)[0] == 200
    sock.close()


def test_idle_and_stalled_connections_are_closed(server: Server) -> None:
    idle = connect(server)  # says nothing
    stalled = connect(server)
    stalled.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.1)
    start = time.monotonic()
    assert closed(idle, within=5) and closed(stalled, within=5)
    assert time.monotonic() - start < 4  # keep_alive=1.0 (swept every 0.25 s)
    idle.close()
    stalled.close()


def test_a_client_that_leaves_mid_request_costs_nothing(server: Server) -> None:
    for _ in range(20):
        sock = connect(server)
        sock.sendall(infer_request()[:-10])  # the body never completes
        sock.close()
        sock = connect(server)
        sock.sendall(infer_request())  # sent whole, the answer never read
        sock.close()
    sock, buffer = connect(server), bytearray()
    sock.sendall(infer_request())
    assert read_response(sock, buffer)[0] == 200
    sock.close()


def test_any_asgi_app_runs_on_it() -> None:
    """The connection layer is plain ASGI: a hand-written app with a streamed (chunked) response."""
    import asyncio
    import threading

    from deploykit.serve.connection import Connection, ServerState

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-len", str(len(body)).encode())]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    loop = asyncio.new_event_loop()
    state = ServerState(app)
    listening = loop.run_until_complete(loop.create_server(lambda: Connection(state), "127.0.0.1", 0))
    port = listening.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        sock, buffer = socket.create_connection(("127.0.0.1", port), timeout=5), bytearray()
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        while not buffer.endswith(b"0\r\n\r\n"):
            buffer += sock.recv(65536)
        head, _, body = bytes(buffer).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower() and b"x-len: 5" in head.lower()
        assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
        sock.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        listening.close()
        loop.close()
