"""Hostile traffic against a running server (issue 13, "Reliability, tested"): thousands of malformed
requests, each answered with a 4xx and a protocol error body, while valid requests keep being answered
correctly and resident memory stays flat.

The server runs in this process (``deploykit.serve.Server`` on port 0, loopback only) over a small
repository: ``digits`` versions 1 and 2 (the bundled MLP), all versions served, a label ``stable``;
with ``max_body_bytes=8192`` and ``max_elements=4096`` so that the limits are reached cheaply.

What is sent: a hand-written table (148 requests, 21 of them off-route) and, from a seeded random
mutator over valid requests (KServe v2 JSON, v2 binary tensors, TF Serving rows and columns), 2,400
more: invalid JSON, wrong
datatype names, shape/data length mismatches, ``Inference-Header-Content-Length`` and
``binary_data_size`` that lie, huge / negative / NaN / string shapes, NaN, strings, nulls and
overflowing numbers where numbers go, missing and mistyped fields, unknown inputs/outputs/models/
versions/labels, oversized bodies, gzip/deflate bombs and corrupt compressed bodies, unknown
Content-Encodings, truncated bodies, random bytes, bad paths and methods, malformed TF Serving
``instances``/``inputs``. Wrong Content-Types ride along on malformed bodies only: the server reads
bodies whatever their Content-Type (tritonclient sends none), so a valid body is valid under any.
Likewise NaN in an FP32 tensor is valid by design (``v2codec``), so NaN is sent where it cannot be.

Measured on the 2-core development machine: 2,548 malformed requests (statuses 400: 1,927, 403: 1,
404: 186, 405: 180, 413: 254) and 27 valid checks in ~5-8 s over 2 connections; resident memory
127.1 MB after the first 500, 127.2 MB at the end (+0.17 MB; bound asserted: 8 MB).
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import socket
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from deploykit.serve import Server
from tests._support.serving import digits_repository, rss

MAX_BODY = 8192
MAX_ELEMENTS = 4096
#: Malformed requests made by the mutator (the table adds its own).
MUTATED = 2400
#: Requests after which memory is taken as warmed up.
WARMUP = 500
#: Allowed growth of resident memory from the warm-up point to the end (bytes).
RSS_BOUND = 8 * 2**20
V2 = "/v2/models/digits/infer"
TF = "/v1/models/digits:predict"

Request = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


class Dropped(AssertionError):
    """The server closed or reset the connection without an answer."""


class Client:
    """One persistent HTTP/1.1 connection to the server (a new one only when the server closes it
    after an answer). A connection lost before an answer is a failure (``Dropped``), never retried."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.connections = 0

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.connect()
            assert self.conn.sock is not None
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
        try:
            # bytes in one call: headers and body leave in one segment (no Nagle/delayed-ACK stall)
            self.conn.request(
                method, path, body=body if method not in ("GET", "HEAD") or body else None, headers=headers
            )
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise Dropped(
                f"{method} {path}: connection lost without an answer ({type(e).__name__}: {e})"
            ) from e
        if response.will_close or "Content-Length" in headers:
            self.close()  # (a Content-Length that lies leaves the server waiting for the rest: hang up)
        return response.status, data, response.getheader("content-type") or ""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_repository(tmp_path_factory.mktemp("hostile"),
                             config={"version_policy": {"all": True}, "labels": {"stable": 1}})


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with Server(repo, port=0, max_body_bytes=MAX_BODY, max_elements=MAX_ELEMENTS) as running:
        yield running


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_test_data()
    images = images[:16]
    return images, dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})["probabilities"]


# ----------------------------------------------------------------------------------- valid requests


def v2_payload(images: np.ndarray) -> dict[str, Any]:
    return {
        "id": "fuzz",
        "inputs": [
            {
                "name": "images",
                "shape": list(images.shape),
                "datatype": "FP32",
                "data": images.ravel().tolist(),
            }
        ],
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def v2_binary(images: np.ndarray) -> tuple[dict[str, Any], bytes]:
    raw = np.ascontiguousarray(images, np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": "images",
                "shape": list(images.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
    }
    return header, raw


def binary_request(header: dict[str, Any], raw: bytes, path: str = V2) -> Request:
    text = dumps(header)
    return "POST", path, {"Inference-Header-Content-Length": str(len(text))}, text + raw


class Checker:
    """Valid requests in between, each answer compared with in-process inference."""

    def __init__(self, client: Client, images: np.ndarray, want: np.ndarray) -> None:
        self.client, self.images, self.want = client, images, want
        self.turn = 0
        self.checked = 0

    def check(self) -> None:
        self.turn += 1
        rows = slice(self.turn % 12, self.turn % 12 + 1 + self.turn % 4)
        images, want = self.images[rows], self.want[rows]
        kind = self.turn % 3
        if kind == 0:
            status, body, _ = self.client.send(
                "POST", V2, {"Content-Type": "application/json"}, dumps(v2_payload(images))
            )
            assert status == 200, body[:300]
            out = {o["name"]: o for o in json.loads(body)["outputs"]}["probabilities"]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        elif kind == 1:
            status, body, _ = self.client.send(*binary_request(*v2_binary(images)))
            assert status == 200, body[:300]
            out = {o["name"]: o for o in json.loads(body)["outputs"]}["probabilities"]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        else:
            status, body, _ = self.client.send(
                "POST",
                "/v1/models/digits/labels/stable:predict",
                {"Content-Type": "application/json"},
                dumps({"instances": images.tolist()}),
            )
            assert status == 200, body[:300]
            got = np.asarray([p["probabilities"] for p in json.loads(body)["predictions"]], np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        self.checked += 1


# ------------------------------------------------------------------------------------- the table


def table(images: np.ndarray) -> list[tuple[str, Request]]:
    """Hand-written malformed requests: (what, request)."""
    one = images[:1]
    good = v2_payload(one)
    body = dumps(good)
    row = one.tolist()
    js = {"Content-Type": "application/json"}

    def v2(payload: Any, path: str = V2, headers: dict[str, str] | None = None) -> Request:
        return (
            "POST",
            path,
            headers if headers is not None else js,
            payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
        )

    def tensor(**changes: Any) -> dict[str, Any]:
        entry = {**good["inputs"][0], **changes}
        return {"inputs": [{k: v for k, v in entry.items() if v is not ...}]}

    header, raw = v2_binary(one)
    binary = dumps(header)
    bomb = gzip.compress(b"\0" * 4 * 2**20)  # 4 MiB of zeros in ~4 KB
    deflate_bomb = zlib.compress(b" " * 4 * 2**20, 9)
    cases: list[tuple[str, Request]] = [
        ("empty body", v2(b"")),
        ("invalid JSON", v2(b"{")),
        ("JSON array", v2(b"[]")),
        ("JSON string", v2(b'"inputs"')),
        ("JSON null", v2(b"null")),
        ("not UTF-8", v2(b"\xff\xfe\x00{")),
        ("deep nesting", v2(b"[" * 4000 + b"]" * 4000)),
        (
            "deep nesting in data",
            v2(
                b'{"inputs":[{"name":"images","shape":[1],"datatype":"FP32","data":'
                + b"[" * 2000
                + b"1"
                + b"]" * 2000
                + b"}]}"
            ),
        ),
        ("inputs missing", v2({"id": "x"})),
        ("inputs an object", v2({"inputs": {"images": [1.0]}})),
        ("inputs empty", v2({"inputs": []})),
        ("input not an object", v2({"inputs": [5]})),
        ("datatype unknown", v2(tensor(datatype="FLOAT32"))),
        ("datatype lower case", v2(tensor(datatype="fp32"))),
        ("datatype BF16", v2(tensor(datatype="BF16"))),
        ("datatype a number", v2(tensor(datatype=32))),
        ("datatype missing", v2(tensor(datatype=...))),
        ("floats as INT32", v2(tensor(datatype="INT32"))),
        ("floats as BOOL", v2(tensor(datatype="BOOL"))),
        ("floats as BYTES", v2(tensor(datatype="BYTES"))),
        ("strings as FP32", v2(tensor(data=["1.0"] * 64))),
        ("one string among numbers", v2(tensor(data=[*good["inputs"][0]["data"][:63], "x"]))),
        ("null among numbers", v2(tensor(data=[*good["inputs"][0]["data"][:63], None]))),
        ("booleans as FP32", v2(tensor(data=[True] * 64))),
        ("NaN in INT64", v2(tensor(datatype="INT64", data=[float("nan")] * 64))),
        ("NaN as a dimension", v2(tensor(shape=[float("nan"), 1, 8, 8]))),
        ("Infinity as a dimension", v2(tensor(shape=[float("inf"), 1, 8, 8]))),
        ("string dimension", v2(tensor(shape=["1", 1, 8, 8]))),
        ("float dimension", v2(tensor(shape=[1.0, 1, 8, 8]))),
        ("negative dimension", v2(tensor(shape=[-1, 1, 8, 8]))),
        ("shape not a list", v2(tensor(shape=64))),
        ("shape missing", v2(tensor(shape=...))),
        ("rank 40", v2(tensor(shape=[1] * 40))),
        ("huge shape", v2(tensor(shape=[10**9, 10**9, 10**9, 10**9]))),
        ("huge shape with a zero", v2(tensor(shape=[0, 10**12, 8, 8], data=[]))),
        ("shape 2**64", v2(tensor(shape=[2**64, 1, 8, 8]))),
        ("data shorter than shape", v2(tensor(data=good["inputs"][0]["data"][:63]))),
        ("data longer than shape", v2(tensor(data=[*good["inputs"][0]["data"], 0.0]))),
        ("data missing", v2(tensor(data=...))),
        ("data a string", v2(tensor(data="0" * 64))),
        ("data ragged", v2(tensor(data=[[0.0] * 32, [0.0] * 31 + [[0.0]]]))),
        ("value past FP32", v2(tensor(data=[1e39] * 64))),
        ("integer past float64", v2(tensor(data=[10**400] * 64))),
        ("name missing", v2(tensor(name=...))),
        ("name empty", v2(tensor(name=""))),
        ("name a list", v2(tensor(name=["images"]))),
        ("unknown input", v2(tensor(name="pixels"))),
        ("input twice", v2({"inputs": good["inputs"] * 2})),
        ("wrong rank for the model", v2(tensor(shape=[1, 64]))),
        ("wrong inner shape for the model", v2(tensor(shape=[1, 1, 8, 4], data=[0.0] * 32))),
        ("unknown output", v2({**good, "outputs": [{"name": "nope"}]})),
        ("outputs an object", v2({**good, "outputs": {"name": "label"}})),
        ("output a string", v2({**good, "outputs": ["label"]})),
        (
            "binary_data not a bool",
            v2({**good, "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}),
        ),
        ("binary_data_output a string", v2({**good, "parameters": {"binary_data_output": "yes"}})),
        ("parameters a list", v2({**good, "parameters": []})),
        ("id a number", v2({**good, "id": 5})),
        (
            "header length past the body",
            v2(binary + raw, headers={"Inference-Header-Content-Length": "99999"}),
        ),
        ("header length cuts the JSON", v2(binary + raw, headers={"Inference-Header-Content-Length": "10"})),
        ("header length zero", v2(binary + raw, headers={"Inference-Header-Content-Length": "0"})),
        ("header length negative", v2(binary + raw, headers={"Inference-Header-Content-Length": "-1"})),
        ("header length not a number", v2(binary + raw, headers={"Inference-Header-Content-Length": "abc"})),
        ("header length huge", v2(binary + raw, headers={"Inference-Header-Content-Length": "9" * 40})),
        ("header length missing", v2(binary + raw, headers={})),
        (
            "binary_data_size too big",
            binary_request(
                {"inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": 257}}]}, raw
            ),
        ),
        (
            "binary_data_size too small",
            binary_request(
                {"inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": 255}}]}, raw
            ),
        ),
        (
            "binary_data_size negative",
            binary_request(
                {"inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": -256}}]}, raw
            ),
        ),
        (
            "binary_data_size and data",
            binary_request({"inputs": [{**header["inputs"][0], "data": [0.0] * 64}]}, raw),
        ),
        ("binary bytes left over", binary_request(header, raw + b"\0\0\0\0")),
        (
            "binary BOOL not 0/1",
            binary_request(
                {
                    "inputs": [
                        {
                            "name": "images",
                            "shape": [1, 1, 8, 8],
                            "datatype": "BOOL",
                            "parameters": {"binary_data_size": 64},
                        }
                    ]
                },
                b"\x07" * 64,
            ),
        ),
        (
            "binary BYTES length lies",
            binary_request(
                {
                    "inputs": [
                        {
                            "name": "images",
                            "shape": [1],
                            "datatype": "BYTES",
                            "parameters": {"binary_data_size": 8},
                        }
                    ]
                },
                b"\xff\xff\xff\x7fabcd",
            ),
        ),
        ("oversized body", v2(body + b" " * MAX_BODY)),
        ("oversized declared Content-Length", ("POST", V2, {"Content-Length": str(10**12), **js}, b"")),
        ("gzip bomb", v2(bomb, headers={"Content-Encoding": "gzip"})),
        ("deflate bomb", v2(deflate_bomb, headers={"Content-Encoding": "deflate"})),
        ("gzip that is not gzip", v2(body, headers={"Content-Encoding": "gzip"})),
        ("deflate that is not deflate", v2(body, headers={"Content-Encoding": "deflate"})),
        ("truncated gzip", v2(gzip.compress(body)[:40], headers={"Content-Encoding": "gzip"})),
        ("gzip of garbage", v2(gzip.compress(b"\x00garbage"), headers={"Content-Encoding": "gzip"})),
        ("brotli", v2(body, headers={"Content-Encoding": "br"})),
        ("two encodings", v2(gzip.compress(gzip.compress(body)), headers={"Content-Encoding": "gzip, gzip"})),
        (
            "form content type, form body",
            v2(b"a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        ),
        (
            "multipart",
            v2(
                b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=x"},
            ),
        ),
        ("unknown model", v2(good, path="/v2/models/nope/infer")),
        ("unknown version", v2(good, path="/v2/models/digits/versions/9/infer")),
        ("version zero", v2(good, path="/v2/models/digits/versions/0/infer")),
        ("version not a number", v2(good, path="/v2/models/digits/versions/abc/infer")),
        ("version huge", v2(good, path="/v2/models/digits/versions/" + "9" * 30 + "/infer")),
        ("model name with dots", v2(good, path="/v2/models/%2e%2e/infer")),
        ("model name long", v2(good, path="/v2/models/" + "m" * 5000 + "/infer")),
        ("metadata of an unknown model", ("GET", "/v2/models/nope", {}, b"")),
        ("config of an unknown version", ("GET", "/v2/models/digits/versions/7/config", {}, b"")),
        ("ready of an unknown model", ("GET", "/v2/models/nope/ready", {}, b"")),
        ("repository API disabled", v2(b"{}", path="/v2/repository/index")),
        ("TF not JSON", v2(b"{instances", path=TF)),
        ("TF array", v2(b"[[1]]", path=TF)),
        ("TF neither instances nor inputs", v2({"signature_name": "serving_default"}, path=TF)),
        ("TF both", v2({"instances": row, "inputs": row}, path=TF)),
        ("TF unknown key", v2({"instances": row, "extra": 1}, path=TF)),
        ("TF unknown signature", v2({"instances": row, "signature_name": "predict"}, path=TF)),
        ("TF instances empty", v2({"instances": []}, path=TF)),
        ("TF instances an object", v2({"instances": {"images": row}}, path=TF)),
        ("TF instances a number", v2({"instances": 5}, path=TF)),
        ("TF instances ragged", v2({"instances": [[[[0.0] * 8] * 8], [[[0.0] * 8] * 7]]}, path=TF)),
        ("TF strings for numbers", v2({"instances": [[[["x"] * 8] * 8]]}, path=TF)),
        ("TF nulls for numbers", v2({"instances": [[[[None] * 8] * 8]]}, path=TF)),
        ("TF booleans and numbers", v2({"instances": [[[[True] + [0.0] * 7] * 8]]}, path=TF)),
        ("TF wrong inner shape", v2({"instances": [[[[0.0] * 7] * 8]]}, path=TF)),
        ("TF too deep", v2({"instances": json.loads("[" * 40 + "1" + "]" * 40)}, path=TF)),
        ("TF too many elements", v2(b'{"instances":[' + b",".join([b"0"] * 4000) + b"]}", path=TF)),
        # (an integer past 64 bits that a double holds is read as that double, as TF Serving's rapidjson
        # does: a float input takes it; one past any double is refused)
        ("TF integer past float64", v2({"instances": [[[[10**400] * 8] * 8]]}, path=TF)),
        ("TF bad base64", v2({"instances": [{"b64": "***"}]}, path=TF)),
        ("TF base64 for numbers", v2({"instances": [{"b64": "AAAA"}]}, path=TF)),
        ("TF named instances disagree", v2({"instances": [{"images": row[0]}, {"pixels": row[0]}]}, path=TF)),
        ("TF named and plain instances", v2({"instances": [{"images": row[0]}, row[0]]}, path=TF)),
        ("TF unknown named input", v2({"inputs": {"pixels": row}}, path=TF)),
        ("TF columnar wrong shape", v2({"inputs": [[0.0] * 64]}, path=TF)),
        ("TF gzip bomb", v2(bomb, path=TF, headers={"Content-Encoding": "gzip"})),
        ("TF oversized body", v2(b'{"instances":' + b" " * MAX_BODY + b"[]}", path=TF)),
        ("TF unknown model", v2({"instances": row}, path="/v1/models/nope:predict")),
        ("TF unknown version", v2({"instances": row}, path="/v1/models/digits/versions/5:predict")),
        ("TF version not a number", v2({"instances": row}, path="/v1/models/digits/versions/x:predict")),
        ("TF unknown label", v2({"instances": row}, path="/v1/models/digits/labels/canary:predict")),
        ("TF classify", v2({"instances": row}, path="/v1/models/digits:classify")),
        ("TF regress", v2({"instances": row}, path="/v1/models/digits:regress")),
        ("TF status of an unknown version", ("GET", "/v1/models/digits/versions/3", {}, b"")),
        ("TF metadata of an unknown model", ("GET", "/v1/models/nope/metadata", {}, b"")),
    ]
    return cases


#: Requests outside the endpoints' routes (no such path, or a method a path does not take): a 4xx,
#: from the router (Starlette's plain-text 404/405, not the protocol's {"error"} body).
OFF_ROUTE: list[tuple[str, str]] = [
    ("GET", V2),
    ("PUT", V2),
    ("DELETE", V2),
    ("PATCH", V2),
    ("OPTIONS", V2),
    ("POST", "/v2/health/live"),
    ("DELETE", "/v2/models/digits"),
    ("POST", "/v2/models/digits/ready"),
    ("GET", "/v2/nothing"),
    ("GET", "/v2/models"),
    ("POST", "/v2/models//infer"),
    ("GET", "/"),
    ("POST", "/infer"),
    ("GET", "/v3/models/digits"),
    ("DELETE", "/v1/models/digits"),
    ("PUT", TF),
    ("GET", "/v1/model"),
    ("POST", "/metrics"),
    ("GET", "/v2/models/digits/versions/1/infer/extra"),
    ("POST", "/v2/models/..%2fetc/infer"),
    ("POST", "/v2/models/a%2fb/versions/1/infer"),
]  # (a trailing slash is answered 307 to the path without it, a redirect and not an error: not sent)


# --------------------------------------------------------------------------------------- mutator

JUNK_TYPES = [
    "FLOAT",
    "fp32",
    "FP 32",
    "",
    "FP8",
    "BF16",
    "INT128",
    "STRING",
    "UINT",
    "TYPE_FP32",
    "INT32",
    "INT8",
    "UINT64",
    "BOOL",
    "BYTES",
]  # the last five are real but refuse floats
BAD_VALUES: list[Any] = ["x", "1.0", None, {}, True, False, [], 1e39, -1e39, 10**400, {"b64": "AA=="}]
BAD_DIMS: list[Any] = [-1, -(2**63), 1.5, "8", None, float("nan"), float("inf"), [8], {}, True, 2**64, 10**30]
CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "application/octet-stream",
    "image/png",
    "application/json; charset=latin-1",
    "multipart/form-data",
    "",
    "*/*",
    "application/x-www-form-urlencoded",
]


class Mutator:
    """Malformed requests from valid ones, by a seeded ``random.Random``; every mutation is one that
    cannot leave a valid request (checked by construction, and by the test: a 200 fails it)."""

    def __init__(self, seed: int, images: np.ndarray) -> None:
        self.rng = random.Random(seed)
        self.images = images

    def batch(self) -> np.ndarray:
        start = self.rng.randrange(len(self.images) - 4)
        return self.images[start : start + self.rng.randint(1, 4)]

    def version_path(self) -> str:
        return self.rng.choice(
            [V2, "/v2/models/digits/versions/1/infer", "/v2/models/digits/versions/2/infer"]
        )

    def make(self) -> tuple[str, Request]:
        kinds: list[Callable[[], tuple[str, Request]]] = [
            self.v2_structure,
            self.v2_structure,
            self.v2_structure,
            self.v2_bytes,
            self.truncated,
            self.header_length,
            self.binary_size,
            self.encoding,
            self.oversized,
            self.path,
            self.tf,
            self.tf,
            self.random_bytes,
            self.method,
        ]
        what, (method, path, headers, body) = self.rng.choice(kinds)()
        if method == "POST" and self.rng.random() < 0.3:  # a wrong Content-Type on top
            headers = {**headers, "Content-Type": self.rng.choice(CONTENT_TYPES)}
            what += " +content-type"
        return what, (method, path, headers, body)

    # -- KServe v2 JSON, field by field
    def v2_structure(self) -> tuple[str, Request]:
        rng = self.rng
        payload = v2_payload(self.batch())
        entry = payload["inputs"][0]
        count = len(entry["data"])
        choice = rng.randrange(12)
        if choice == 0:
            entry["datatype"] = rng.choice([*JUNK_TYPES, 32, None, ["FP32"], {"t": "FP32"}])
            what = "datatype"
        elif choice == 1:  # a shape whose product differs from the data's length
            while math_prod(entry["shape"]) == count:
                entry["shape"] = [rng.choice([0, 1, 2, 3, 5, 7, 8, 9, 64]) for _ in range(rng.randint(0, 6))]
            what = "shape/data mismatch"
        elif choice == 2:
            entry["shape"][rng.randrange(4)] = rng.choice(BAD_DIMS)
            what = "bad dimension"
        elif choice == 3:
            entry["shape"] = [rng.choice([10**6, 10**9, 2**40, 2**62]) for _ in range(rng.randint(1, 8))]
            what = "huge shape"
        elif choice == 4:
            data = entry["data"]
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(BAD_VALUES)
            what = "bad values"
        elif choice == 5:  # NaN only where it cannot go: an integer or boolean tensor
            entry["datatype"] = rng.choice(["INT64", "INT32", "UINT8", "BOOL"])
            entry["data"] = [float("nan")] * count
            what = "NaN in an integer tensor"
        elif choice == 6:
            cut = rng.randrange(count)
            entry["data"] = entry["data"][:cut] if rng.random() < 0.5 else entry["data"] + [0.0] * (cut + 1)
            what = "data length"
        elif choice == 7:
            key = rng.choice(["name", "shape", "datatype", "data"])
            del entry[key]
            what = f"missing {key}"
        elif choice == 8:
            key = rng.choice(["inputs", "parameters", "outputs", "id"])
            payload[key] = rng.choice(
                [5, "x", {"a": 1}, [1], True] if key != "inputs" else [5, "x", {}, None, True]
            )
            if key == "outputs" and isinstance(payload[key], list):
                payload[key] = ["label"]
            if key == "id" and isinstance(payload[key], str):
                payload[key] = 7
            if key == "parameters":
                payload[key] = rng.choice(
                    [[1], "x", 5, {"binary_data_output": rng.choice(["yes", 1, None, [], {}])}]
                )
                if payload[key] == {"binary_data_output": None}:
                    payload[key] = [None]
            what = f"mistyped {key}"
        elif choice == 9:
            entry["name"] = rng.choice(["", "image", "IMAGES", "images ", 5, None, ["images"], "x" * 300])
            what = "input name"
        elif choice == 10:
            extra = {
                "name": rng.choice(["images", "label", "extra"]),
                "shape": [1],
                "datatype": "FP32",
                "data": [0.0],
            }
            payload["inputs"].append(extra)
            what = "extra input"
        else:
            payload["outputs"] = [{"name": rng.choice(["nope", "Label", "probabilities ", ""])}]
            what = "unknown output"
        return f"v2 {what}", (
            "POST",
            self.version_path(),
            {"Content-Type": "application/json"},
            json.dumps(payload).encode(),
        )

    # -- KServe v2 JSON, byte by byte until it is no longer JSON
    def v2_bytes(self) -> tuple[str, Request]:
        body = bytearray(dumps(v2_payload(self.batch())))
        while True:
            for _ in range(self.rng.randint(1, 8)):
                at = self.rng.randrange(len(body))
                op = self.rng.randrange(3)
                if op == 0:
                    body[at] = self.rng.randrange(256)
                elif op == 1:
                    body.insert(at, self.rng.choice(b'{}[]",:\\\x00\xff'))
                else:
                    del body[at]
            try:
                json.loads(body)
            except ValueError:
                break
        return "v2 corrupted bytes", ("POST", V2, {"Content-Type": "application/json"}, bytes(body))

    def truncated(self) -> tuple[str, Request]:
        if self.rng.random() < 0.5:
            body = dumps(v2_payload(self.batch()))
            return "v2 truncated JSON", ("POST", V2, {}, body[: self.rng.randrange(len(body))])
        header, raw = v2_binary(self.batch())
        _, path, headers, body = binary_request(header, raw)
        return "v2 truncated binary", ("POST", path, headers, body[: self.rng.randrange(len(body))])

    def header_length(self) -> tuple[str, Request]:
        if self.rng.random() < 0.5:
            header, raw = v2_binary(self.batch())
            text = dumps(header)
        else:
            text, raw = dumps(v2_payload(self.batch())), b""
        body, right = text + raw, len(text)
        value = self.rng.choice(
            [
                lambda: str(self.rng.randrange(right)),
                lambda: str(right + self.rng.randint(1, 5000)),
                lambda: str(-self.rng.randint(1, 100)),
                lambda: self.rng.choice(["", " ", "abc", "1e3", "0x10", "12 34", "1.5", "+12", "12a"]),
                lambda: "9" * self.rng.randint(19, 60),
            ]
        )()
        if value.strip() == str(right):
            value = str(right + 1)
        return "v2 Inference-Header-Content-Length lies", (
            "POST",
            V2,
            {"Inference-Header-Content-Length": value},
            body,
        )

    def binary_size(self) -> tuple[str, Request]:
        header, raw = v2_binary(self.batch())
        size = len(raw)
        lie = self.rng.choice(
            [
                size - self.rng.randint(1, size),
                size + self.rng.randint(1, 5000),
                -self.rng.randint(1, 9),
                2**63,
            ]
        )
        header["inputs"][0]["parameters"]["binary_data_size"] = lie
        return "v2 binary_data_size lies", binary_request(header, raw)

    def encoding(self) -> tuple[str, Request]:
        body = dumps(v2_payload(self.batch()))
        choice = self.rng.randrange(5)
        if choice == 0:
            return "gzip bomb", (
                "POST",
                self.rng.choice([V2, TF]),
                {"Content-Encoding": "gzip"},
                gzip.compress(b"\0" * self.rng.randint(2, 8) * 2**20, 9),
            )
        if choice == 1:
            return "deflate bomb", (
                "POST",
                V2,
                {"Content-Encoding": "deflate"},
                zlib.compress(b"[" * self.rng.randint(2, 8) * 2**20, 9),
            )
        if choice == 2:
            packed = bytearray(gzip.compress(body))
            del packed[self.rng.randrange(10, len(packed) - 16) :]  # into the deflate data
            return "truncated gzip", ("POST", V2, {"Content-Encoding": "gzip"}, bytes(packed))
        if choice == 3:
            return "plain body said gzip/deflate", (
                "POST",
                V2,
                {"Content-Encoding": self.rng.choice(["gzip", "deflate"])},
                body,
            )
        return "unknown Content-Encoding", (
            "POST",
            V2,
            {"Content-Encoding": self.rng.choice(["br", "zstd", "compress", "x-gzip", "gzip;q=1", "*"])},
            body,
        )

    def oversized(self) -> tuple[str, Request]:
        body = dumps(v2_payload(self.batch()))
        pad = MAX_BODY - len(body) + self.rng.randint(1, 3 * MAX_BODY)
        return "oversized body", (
            "POST",
            self.rng.choice([V2, TF]),
            {"Content-Type": "application/json"},
            body[:-1] + b" " * pad + b"}",
        )

    def path(self) -> tuple[str, Request]:
        rng = self.rng
        name = rng.choice(
            [
                "nope",
                "Digits",
                "digits2",
                "d%C3%AFgits",
                "%2e%2e",
                "..",
                "a" * rng.randint(1, 900),
                "digits%00",
                "%20",
            ]
        )
        version = rng.choice(["0", "3", "-1", "1.0", "abc", "9" * rng.randint(2, 40), "%2e%2e"])
        body = dumps(v2_payload(self.batch()))
        path = rng.choice(
            [
                f"/v2/models/{name}/infer",
                f"/v2/models/digits/versions/{version}/infer",
                f"/v2/models/{name}/versions/1/infer",
                f"/v1/models/{name}:predict",
                f"/v1/models/digits/versions/{version}:predict",
                f"/v1/models/digits/labels/{name}:predict",
            ]
        )
        if path.startswith("/v1"):
            body = dumps({"instances": self.batch().tolist()})
        return "unknown model/version/label", ("POST", path, {"Content-Type": "application/json"}, body)

    def tf(self) -> tuple[str, Request]:
        rng = self.rng
        rows = self.batch().tolist()
        choice = rng.randrange(9)
        payload: Any
        if choice == 0:  # one row cut short: ragged
            rows[rng.randrange(len(rows))][0][rng.randrange(8)].pop()
            payload, what = {"instances": rows}, "ragged instances"
        elif choice == 1:
            rows[rng.randrange(len(rows))][0][rng.randrange(8)][rng.randrange(8)] = rng.choice(
                ["x", None, {}, {"b64": "AA"}, [1.0], True]
            )
            payload, what = {"instances": rows}, "a bad value in instances"
        elif choice == 2:
            payload, what = (
                {"instances": [[[row[0][: rng.randint(1, 7)]] for row in rows]]},
                "wrong inner shape",
            )
        elif choice == 3:
            payload = {
                rng.choice(["instances", "inputs"]): rng.choice([5, "x", None, True, [], {"b64": "%%"}])
            }
            if payload == {"inputs": []}:
                payload = {"inputs": None}
            what = "instances/inputs of the wrong kind"
        elif choice == 4:
            payload, what = (
                {"instances": rows, rng.choice(["inputs", "signature", "outputs", "Instances"]): rows},
                "extra key",
            )
        elif choice == 5:
            payload, what = (
                {"instances": rows, "signature_name": rng.choice(["predict", "x", 5, None])},
                "signature_name",
            )
        elif choice == 6:
            payload, what = (
                {"inputs": {rng.choice(["pixels", "image", "label", ""]): rows}},
                "unknown named input",
            )
        elif choice == 7:
            payload, what = (
                {
                    "instances": [{"images": row} if i % 2 == 0 else {"x": row} for i, row in enumerate(rows)]
                    + ([{"x": rows[0]}] if len(rows) == 1 else [])
                },
                "named instances disagree",
            )
        else:
            depth = rng.randint(33, 200)
            payload, what = json.loads("[" * depth + "0.5" + "]" * depth), "too deep"
            payload = {"instances": payload}
        body = json.dumps(payload).encode()
        path = rng.choice(
            [TF, "/v1/models/digits/versions/1:predict", "/v1/models/digits/labels/stable:predict"]
        )
        return f"TF {what}", ("POST", path, {"Content-Type": "application/json"}, body)

    def random_bytes(self) -> tuple[str, Request]:
        body = self.rng.randbytes(self.rng.randint(0, 3000))
        headers = self.rng.choice(
            [
                {},
                {"Inference-Header-Content-Length": str(self.rng.randint(0, len(body)))},
                {"Content-Encoding": "gzip"},
            ]
        )
        path = self.rng.choice([V2, TF, "/v2/models/digits/versions/1/infer"])
        return "random bytes", ("POST", path, headers, body)

    def method(self) -> tuple[str, Request]:
        # a body on a GET endpoint, and the wrong methods (answered by the router, see OFF_ROUTE)
        return "off-route", (
            self.rng.choice(["PUT", "DELETE", "PATCH"]),
            self.rng.choice([V2, TF]),
            {},
            self.rng.randbytes(self.rng.randint(0, 200)),
        )


def math_prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


# ------------------------------------------------------------------------------------------ tests


def expect_error(
    what: str, request: Request, status: int, body: bytes, content_type: str, problems: list[str]
) -> None:
    method, path, headers, data = request
    shown = f"{what}: {method} {path[:120]} {headers} {data[:160]!r} -> {status} {body[:300]!r}"
    if not 400 <= status < 500:
        problems.append(shown)
        return
    on_route = what != "off-route"
    if on_route:
        try:
            answer = json.loads(body)
        except ValueError:
            problems.append(f"not JSON: {shown}")
            return
        if not (
            isinstance(answer, dict)
            and set(answer) == {"error"}
            and isinstance(answer["error"], str)
            and answer["error"]
        ) or not content_type.startswith("application/json"):
            problems.append(f"not an error body: {shown}")


def test_thousands_of_malformed_requests_get_4xx_and_the_server_stays_right(
    server: Server, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    images, want = reference
    client = Client(server.port)
    checker = Checker(client, images, want)
    checker.check()
    requests = table(images) + [("off-route", (m, p, {}, b"")) for m, p in OFF_ROUTE]
    mutator = Mutator(20261130, images)
    requests += [mutator.make() for _ in range(MUTATED)]
    problems: list[str] = []
    statuses: Counter = Counter()
    kinds: Counter = Counter()
    warm = 0
    for n, (what, request) in enumerate(requests, 1):
        status, body, content_type = client.send(request[0], request[1], request[2], request[3])
        statuses[status] += 1
        kinds[what.split(" +")[0]] += 1
        expect_error(what, request, status, body, content_type, problems)
        if n % 100 == 0:
            checker.check()
        if n == WARMUP:
            warm = rss()
    checker.check()
    end = rss()
    client.close()
    assert len(requests) >= 2000
    assert not problems, f"{len(problems)} of {len(requests)} answers wrong, e.g.:\n" + "\n".join(
        problems[:10]
    )
    assert set(statuses) <= set(range(400, 500)), statuses
    assert checker.checked >= len(requests) // 100
    growth = end - warm
    assert growth < RSS_BOUND, (
        f"resident memory grew {growth / 2**20:.1f} MB from request {WARMUP} "
        f"({warm / 2**20:.1f} MB) to {len(requests)} ({end / 2**20:.1f} MB)"
    )
    print(
        f"\n{len(requests)} malformed requests, statuses {dict(sorted(statuses.items()))}, "
        f"{checker.checked} valid checks, {client.connections} connections; RSS {warm / 2**20:.1f} MB "
        f"after {WARMUP} -> {end / 2**20:.1f} MB at the end ({growth / 2**20:+.2f} MB)"
    )


def test_a_valid_body_is_read_whatever_its_content_type(
    server: Server, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    """Why wrong Content-Types are sent only with malformed bodies: the server does not refuse a valid
    body for its Content-Type (tritonclient sends none), so these are 200."""
    images, _ = reference
    client = Client(server.port)
    for content_type in CONTENT_TYPES:
        status, body, _ = client.send(
            "POST", V2, {"Content-Type": content_type}, dumps(v2_payload(images[:1]))
        )
        assert status == 200, (content_type, body[:200])
    client.close()


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", V2, {"Inference-Header-Content-Length": "\u00b2"}),
        ("POST", "/v1/models/digits/versions/%C2%B2:predict", {}),
        ("GET", "/v1/models/digits/versions/%C2%B2", {}),
    ],
)
def test_unicode_digits_are_a_4xx(
    server: Server, reference: tuple[np.ndarray, np.ndarray], method: str, path: str, headers: dict[str, str]
) -> None:
    images, _ = reference
    body = dumps(v2_payload(images[:1]) if path == V2 else {"instances": images[:1].tolist()})
    client = Client(server.port)
    try:
        status, answer, _ = client.send(method, path, headers, body if method == "POST" else b"")
    finally:
        client.close()
    assert 400 <= status < 500 and set(json.loads(answer)) == {"error"}, (status, answer)


def test_a_gzip_body_without_its_trailer_is_a_400(
    server: Server, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = reference
    client = Client(server.port)
    try:
        status, answer, _ = client.send(
            "POST", V2, {"Content-Encoding": "gzip"}, gzip.compress(dumps(v2_payload(images[:1])))[:-8]
        )
    finally:
        client.close()
    assert status == 400, answer[:200]


def test_off_route_requests_get_the_protocol_error_body(server: Server) -> None:
    client = Client(server.port)
    for method, path in [
        ("GET", V2),
        ("DELETE", "/v2/models/digits"),
        ("GET", "/v2/nothing"),
        ("PUT", TF),
        ("DELETE", "/v1/models/digits"),
    ]:
        status, body, _ = client.send(method, path, {}, b"")
        assert 400 <= status < 500 and set(json.loads(body)) == {"error"}, (method, path, status, body)
    client.close()
